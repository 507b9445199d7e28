"""The soak's faults: a seeded random schedule, and what each fault does.

One fault at a time, each followed by a quiet gap of at least 5 s (the time every slot has to
claim again). The first faults are every kind once, in a random order, so even a 75 s soak
meets each (a kind too long for the time left gives way to a shorter one, and the longest goes
first when waiting would leave it no time); after that kinds are drawn by weight. Each fault is
recorded as a :class:`Window`: from the moment it starts hurting to the moment it is healed (a
kill is an instant), which the verdict reads.

* ``kill``: ``kill -9`` of a random killable worker process (either group).
* ``cut``: the proxy resets every connection of group ``a``, three times within a second.
* ``blackhole``: the proxy drops every byte for 1-4 s, then cuts the links.
* ``latency``: 10-40 ms added to every chunk through the proxy for 2-5 s.
* ``oom``: group ``a``'s Redis at ``maxmemory`` 1 byte (``noeviction``) for 2-4 s.
* ``restart``: group ``a``'s Redis ``kill -9``-ed, down 0.5-2 s, started again from its AOF.
* ``failover``: ``SENTINEL FAILOVER`` in group ``b``; healed once all Sentinels name the new
  master (the next failover first waits, outside its window, for the old master to be a
  healthy replica).
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from typing import Optional

from fault_proxy import FaultProxy

from soakkit.fleet import Fleet, Seen
from soakkit.servers import Servers

__all__ = ["FAULT_KINDS", "Injector", "Window"]

# kind -> (group it hurts, weight once every kind has run once, longest it takes in seconds:
# a fault starts only if that much of the fault phase is left)
FAULT_KINDS: dict[str, tuple[str, int, float]] = {
    "kill": ("*", 3, 1.0), "cut": ("a", 2, 2.0), "blackhole": ("a", 2, 5.0),
    "latency": ("a", 1, 6.0), "oom": ("a", 1, 5.0), "restart": ("a", 1, 5.0),
    "failover": ("b", 2, 12.0),
}
FIRST_AFTER = 2.0  # seconds of load before the first fault (the baseline drained the queues)


@dataclass
class Window:
    """One fault, from its start to its heal (``victim``: the pid a kill hit)."""

    kind: str
    group: str
    start: float
    end: float = 0.0
    detail: str = ""
    victim: Optional[Seen] = None
    error: str = ""

    @property
    def seconds(self) -> float:
        return max(0.0, self.end - self.start)


@dataclass
class Injector:
    """Runs faults on ``servers`` and ``fleet`` from a seeded schedule until told to stop."""

    servers: Servers
    fleet: Fleet
    rng: random.Random
    gap: tuple[float, float]
    kinds: tuple[str, ...] = tuple(FAULT_KINDS)
    windows: list[Window] = field(default_factory=list)
    halt: threading.Event = field(default_factory=threading.Event)

    def run(self, until: float, tail: float) -> None:
        """Inject faults until ``until`` (epoch), leaving the last ``tail`` seconds quiet."""
        pending = list(self.kinds)
        self.rng.shuffle(pending)
        pause = FIRST_AFTER
        while not self.halt.wait(pause):
            budget = until - tail - time.time()
            fits = ([k for k in pending if FAULT_KINDS[k][2] <= budget]
                    or [k for k in self.kinds if FAULT_KINDS[k][2] <= budget])
            if not fits:
                return
            kind = self._first_round(fits, budget) if fits[0] in pending else self._draw(fits)
            if kind in pending:
                pending.remove(kind)
            self.windows.append(self.inject(kind))
            pause = self.rng.uniform(*self.gap)

    def _first_round(self, fits: list[str], budget: float) -> str:
        """The next kind of the first round: the shuffled order's, unless it would leave too
        little time for the longest kind still to come (a failover, in a 75 s run)."""
        longest = max(fits, key=lambda k: FAULT_KINDS[k][2])
        if budget - FAULT_KINDS[fits[0]][2] - self.gap[1] < FAULT_KINDS[longest][2]:
            return longest
        return fits[0]

    def _draw(self, kinds: list[str]) -> str:
        return self.rng.choices(kinds, weights=[FAULT_KINDS[k][1] for k in kinds])[0]

    def inject(self, kind: str) -> Window:
        group = FAULT_KINDS[kind][0]
        window = Window(kind, group, time.time())
        try:
            getattr(self, f"_{kind}")(window)
        except Exception as exc:  # a fault that could not be applied is reported, not fatal
            window.error = f"{type(exc).__name__}: {exc}"
        window.end = window.end or time.time()
        return window

    def _kill(self, window: Window) -> None:
        victim = self.rng.choice(self.fleet.killable())
        window.group, window.victim = victim.config.group, victim
        window.detail = f"{victim.config.name} pid {victim.pid}"
        window.start = window.end = self.fleet.kill(victim)

    def _cut(self, window: Window) -> None:
        proxy = self._proxy()
        for index in range(3):
            if index:
                time.sleep(self.rng.uniform(0.1, 0.5))
            proxy.cut()
        window.detail = "3 cuts"

    def _blackhole(self, window: Window) -> None:
        proxy, seconds = self._proxy(), self.rng.uniform(1.0, 4.0)
        proxy.blackhole(True)
        try:
            time.sleep(seconds)
        finally:
            proxy.blackhole(False)
        window.detail = f"{seconds:.1f} s"

    def _latency(self, window: Window) -> None:
        proxy, delay, seconds = self._proxy(), self.rng.uniform(0.01, 0.04), self.rng.uniform(2, 5)
        proxy.latency(delay)
        try:
            time.sleep(seconds)
        finally:
            proxy.latency(0.0)
        window.detail = f"{delay * 1000:.0f} ms for {seconds:.1f} s"

    def _oom(self, window: Window) -> None:
        assert self.servers.a is not None
        seconds = self.rng.uniform(2.0, 4.0)
        self.servers.a.out_of_memory(True)
        try:
            time.sleep(seconds)
        finally:
            self.servers.a.out_of_memory(False)
        window.detail = f"{seconds:.1f} s"

    def _restart(self, window: Window) -> None:
        assert self.servers.a is not None
        outage = self.rng.uniform(0.5, 2.0)
        self.servers.a.restart(outage)
        window.detail = f"down {outage:.1f} s"

    def _failover(self, window: Window) -> None:
        group = self.servers.b
        assert group is not None
        # The last failover's old master must be a replica every Sentinel sees healthy (they
        # look at replicas every 10 s), or this one fails with NOGOODSLAVE: waited for here,
        # outside the window, so other faults go on meanwhile.
        group.wait_ready(timeout=60.0)
        window.start = time.time()
        old = group.master_port()
        for attempt in range(20):  # INPROG / NOGOODSLAVE while the last one settles
            try:
                group.failover()
                break
            except Exception:
                if attempt == 19:
                    raise
                time.sleep(0.5)
        new = group.wait_for_new_master(old, timeout=30.0)
        window.end = time.time()
        window.detail = f"master {old} -> {new}"

    def _proxy(self) -> FaultProxy:
        assert self.servers.a is not None and self.servers.a.proxy is not None
        return self.servers.a.proxy
