"""A TCP fault proxy between clients and a Redis: cut every connection, black-hole them,
refuse new ones, add latency, or point new ones elsewhere (loopback only)."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time

from fault_servers import HOST, _Closing, wait_for


def _reset_on_close(sock: socket.socket) -> None:
    # SO_LINGER 0: close() sends RST instead of FIN, like a firewall dropping state.
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


class _Link:
    """One proxied connection. Only its serving thread closes the sockets, after the other
    pump thread is done, so no thread can ever use an fd number that was closed under it."""

    def __init__(self, client: socket.socket) -> None:
        self.client = client
        self.upstream: socket.socket | None = None
        self.closed = threading.Event()
        self._lock = threading.Lock()

    def attach(self, upstream: socket.socket | None) -> bool:
        with self._lock:
            self.upstream = upstream
            return not self.closed.is_set()  # False: cut while connecting

    def abort(self, reset: bool) -> None:
        """Shut both sockets down, which wakes any thread blocked on them; idempotent."""
        with self._lock:
            if self.closed.is_set():
                return
            self.closed.set()
            socks = [sock for sock in (self.client, self.upstream) if sock is not None]
        for sock in socks:
            if reset:
                _reset_on_close(sock)
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class FaultProxy(_Closing):
    """A TCP proxy on a free loopback port in front of one Redis, with switchable faults.
    One thread accepts; each connection has a blocking thread per direction, so 50 idle worker
    connections cost 100 sleeping threads and no CPU."""

    def __init__(self, target_port: int, target_host: str = HOST) -> None:
        self._target = (target_host, target_port)
        self._lock = threading.Lock()
        self._links: set[_Link] = set()
        self._blackholed = self._refusing = self._closed = False
        self._latency = 0.0
        # Binding port 0 ourselves leaves no window in which someone else takes the port.
        self._listener = socket.create_server((HOST, 0), backlog=256)
        self.port: int = self._listener.getsockname()[1]
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True)
        self._acceptor.start()

    def url(self, db: int = 0) -> str:
        return f"redis://{HOST}:{self.port}/{db}"

    @property
    def connections(self) -> int:
        """Client connections currently open through the proxy."""
        with self._lock:
            return len(self._links)

    def cut(self) -> None:
        """Reset all current client and upstream connections (SO_LINGER 0 plus shutdown: the
        peers see FIN then RST). New connections are accepted as normal."""
        with self._lock:
            links = list(self._links)
        for link in links:
            link.abort(reset=True)

    def blackhole(self, on: bool) -> None:
        """While on, bytes both ways are dropped silently and new connections are accepted but
        never connected upstream. Turning it off cuts every connection open at that moment:
        their byte streams lost data, so they could not be trusted again anyway."""
        with self._lock:
            stale = list(self._links) if self._blackholed and not on else []
            self._blackholed = on
        for link in stale:
            link.abort(reset=True)

    def refuse(self, on: bool) -> None:
        """While on, new connections are reset right after accept; open ones keep working."""
        with self._lock:
            self._refusing = on

    def latency(self, seconds: float) -> None:
        """Delay each forwarded chunk, in both directions, by ``seconds`` (0 = none)."""
        self._latency = max(0.0, seconds)

    def retarget(self, port: int, host: str = HOST) -> None:
        """Connections accepted from now on go to another upstream; open ones stay put."""
        with self._lock:
            self._target = (host, port)

    def _accept_loop(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                if self._closed:
                    return
                time.sleep(0.01)  # e.g. out of file descriptors: back off, don't spin
                continue
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                link = None if self._refusing or self._closed else _Link(client)
                target = None if self._blackholed else self._target
                if link is not None:
                    self._links.add(link)
            if link is None:
                _reset_on_close(client)
                client.close()
            else:
                threading.Thread(target=self._serve, args=(link, target), daemon=True).start()

    def _serve(self, link: _Link, target: tuple[str, int] | None) -> None:
        """Pump client -> upstream here and upstream -> client in a helper thread. Without a
        target (accepted while black-holed) the client's bytes are just swallowed."""
        upstream = helper = None
        try:
            if target is not None:
                upstream = socket.create_connection(target, timeout=5.0)
                upstream.settimeout(None)
                upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                helper = threading.Thread(
                    target=self._pump, args=(link, upstream, link.client), daemon=True
                )
            if link.attach(upstream):
                if helper is not None:
                    helper.start()
                self._pump(link, link.client, upstream)
        except OSError:
            link.abort(reset=True)  # upstream unreachable: the client sees a reset
        finally:
            link.abort(reset=False)
            if helper is not None and helper.is_alive():
                helper.join()
            for sock in (link.client, upstream):
                if sock is not None:
                    sock.close()
            with self._lock:
                self._links.discard(link)

    def _pump(self, link: _Link, source: socket.socket, sink: socket.socket | None) -> None:
        """Copy until EOF (passed on as FIN) or an error (passed on as RST)."""
        try:
            while data := source.recv(65536):
                delay = self._latency
                if delay > 0 and link.closed.wait(delay):  # an abort ends the delay early
                    return
                if sink is not None and not self._blackholed:
                    sink.sendall(data)
        except OSError:
            link.abort(reset=True)
        link.abort(reset=False)

    def close(self) -> None:
        with self._lock:
            self._closed = True
        # shutdown() wakes the thread blocked in accept(); close the fd once it has left.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._acceptor.join(5)
        self._listener.close()
        self.cut()
        # So that a test can count server-side clients right after close(); never stuck long,
        # since shutdown() also wakes a thread blocked in send().
        with contextlib.suppress(TimeoutError):
            wait_for(lambda: self.connections == 0, 5, "proxy connections to close")
