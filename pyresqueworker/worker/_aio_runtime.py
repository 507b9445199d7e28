"""The asyncio execution mode: every slot of a process is a task on one event loop.

``--execution asyncio`` (or ``auto`` when every registered handler is ``async def``) runs the
process's slots — each still one Resque worker id with its worker key, registered and
heartbeated like a thread slot — as tasks (:class:`~pyresqueworker.worker._aio_slot.AioSlot`) on one
event loop, in a thread of its own; the main thread keeps handling signals and the
housekeeping thread keeps heartbeats, prunes and timeouts, as in thread mode.

What the slots share, so that 10,000 of them cost a few connections:

* claims and completions: ``--connections`` asyncio connections, many slots' calls per
  pipeline (:mod:`pyresqueworker.worker._claim_batch`);
* the idle wait: one watcher per queue (:mod:`pyresqueworker.worker._aio_doorbell`);
* rare sync paths (a lost reply, a large payload, a retry, a give-back): a pool of
  :data:`REDIS_THREADS` threads on one redis-py client with as many connections;
* sync handlers (and jobs when middleware is registered): a pool of up to
  :data:`JOB_THREADS` threads.
"""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

from redis.backoff import NoBackoff
from redis.retry import Retry

from ..jobs.registry import Registry
from ..log import logger
from ..protocol._outage import STOP_PATIENCE
from ..protocol.connection import ConnectionFactory
from ._aio_doorbell import WATCH_BLOCK, AioDoorbell
from ._aio_link import AioLink
from ._aio_slot import AioSlot
from ._claim_batch import ClaimBatcher, link_count
from ._hosts import SlotHost
from ._startup import WorkerError
from .config import MAX_THREAD_SLOTS, WorkerConfig

__all__ = ["JOB_THREADS", "REDIS_THREADS", "AsyncRuntime", "RuntimeHost", "choose_execution"]

T = TypeVar("T")

REDIS_THREADS = 2  # threads (and connections) for the rare sync Redis paths
JOB_THREADS = 64  # most sync jobs one asyncio-mode process runs at once
_LINK_TIMEOUT = 10.0  # seconds one claim pipeline may take before its connection is dropped
_TICK = 0.05  # how often the loop looks at the process's stop and pause flags


def choose_execution(config: WorkerConfig, registry: Registry) -> str:
    """``threads`` or ``asyncio`` for this config and these handlers (``auto``: asyncio when
    every registered handler is ``async def`` and nothing needs threads)."""
    execution = config.execution
    if execution == "auto":
        handlers = registry.handlers()
        execution = "asyncio" if (handlers and all(h.is_async for h in handlers)
                                  and not config.fork_per_job and config.fetch == "claim"
                                  ) else "threads"
    if execution == "threads" and config.concurrency > MAX_THREAD_SLOTS:
        raise WorkerError(f"--concurrency {config.concurrency} is over {MAX_THREAD_SLOTS} for "
                          "threads (some handler is not async def); use --execution asyncio, "
                          "which runs sync handlers in a thread pool")
    return execution


class RuntimeHost(SlotHost, Protocol):
    """What the asyncio runtime uses of its worker process, beyond what its slots do."""

    connections: ConnectionFactory  # the runtime's own links and sync client come from it
    worker_ids: list[str]  # one slot each


class AsyncRuntime:
    """The event loop of one worker process and its slots."""

    def __init__(self, process: RuntimeHost) -> None:
        self.process = process
        config = process.config
        factory = process.connections
        self.sync_client = factory.connect(max_connections=REDIS_THREADS, socket_timeout=10.0,
                                           socket_connect_timeout=5.0,
                                           retry=Retry(NoBackoff(), 1))
        self._redis_pool = ThreadPoolExecutor(REDIS_THREADS, thread_name_prefix="aio-redis")
        self._job_pool = ThreadPoolExecutor(min(config.concurrency, JOB_THREADS),
                                            thread_name_prefix="aio-job")
        self.links = [AioLink(factory, _LINK_TIMEOUT)
                      for _ in range(link_count(config.concurrency, config.connections))]
        self.slots = [AioSlot(self, i, wid) for i, wid in enumerate(process.worker_ids)]
        self._ended: list[AioSlot] = []  # slots whose task ended, for the monitor
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="asyncio-runtime", daemon=True)
        self.loop: asyncio.AbstractEventLoop
        self.batcher: ClaimBatcher
        self.doorbell: AioDoorbell
        self._unpaused: asyncio.Event
        self._not_holding: asyncio.Event  # set unless a Sentinel failover holds writes
        self._stop: asyncio.Event
        self._slots_started = False

    # -- life (called from the main thread) -------------------------------------------------

    def start(self) -> None:
        """Start the loop thread and every slot's task."""
        self._thread.start()
        self._ready.wait()
        if not self._slots_started:  # _main failed before the slots started (logged)
            raise RuntimeError("the asyncio runtime failed to start")

    def join(self, timeout: float) -> None:
        """End the loop: tasks still running (abandoned jobs, already given back) are
        cancelled, connections closed. Waits up to ``timeout`` seconds."""
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(timeout)
        self._redis_pool.shutdown(wait=False)
        self._job_pool.shutdown(wait=False)
        self.sync_client.close()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self.loop = loop
        try:
            loop.run_until_complete(self._main())
        except Exception:
            logger.exception("asyncio runtime failed")
        finally:
            loop.close()
            self._ready.set()  # start() must not wait for ever on a runtime that failed

    async def _main(self) -> None:
        process = self.process
        loop = self.loop
        self.batcher = ClaimBatcher(self.links)
        interval = process.config.interval
        self.doorbell = AioDoorbell(process.keys, self._watch_link, process.paused.is_set,
                                    poll=max(interval, 0.1) if interval else 1.0,
                                    book=process.outages)
        self._unpaused, self._stop = asyncio.Event(), asyncio.Event()
        self._not_holding = asyncio.Event()
        self._unpaused.set()
        self._not_holding.set()
        tasks = {slot: self._start_slot(slot) for slot in self.slots}
        self._slots_started = True
        self._ready.set()
        monitor = loop.create_task(self._monitor(tasks))
        await self._stop.wait()
        gc.unfreeze()  # what the slots kept is garbage now (the monitor froze it)
        self.doorbell.stop()
        monitor.cancel()
        left = [t for t in tasks.values() if not t.done()]
        for task in left:
            task.cancel()
        await asyncio.gather(*left, monitor, return_exceptions=True)
        for link in self.links:
            await link.close()

    def _start_slot(self, slot: AioSlot) -> asyncio.Task[None]:
        slot.ended = False
        task = self.loop.create_task(slot.run())
        task.add_done_callback(lambda _t: self._ended.append(slot))
        return task

    def _watch_link(self) -> AioLink:
        # Just longer than the block: a reply lost in a black hole is noticed a second after
        # it was due (the watcher then waits for the process's prober, see protocol._probe).
        return AioLink(self.process.connections, WATCH_BLOCK + 1.0)

    async def _monitor(self, tasks: dict[AioSlot, asyncio.Task[None]]) -> None:
        """Act on the process's flags (set by the main thread), end a drained process, and
        restart a slot task that ended early (a bug)."""
        process = self.process
        done = 0
        hurried = False
        # The monitor's task was created last, so each slot has now built what it keeps for
        # life. Frozen until the loop ends, those objects (and the imports) leave the full
        # garbage collections, which at 10,000 slots would rescan them every few hundred jobs
        # (C=10,000: about 20 % of the worker's CPU per job).
        gc.freeze()
        while True:
            if process.stopping.is_set():
                self.doorbell.stop()
                self._unpaused.set()
                if not hurried:  # a silent Redis: recovery takes what is left
                    hurried = True
                    for link in self.links:
                        link.hurry(STOP_PATIENCE)
            elif not process.paused.is_set():
                self._unpaused.set()
            if process.stopping.is_set() or not process.connections.holding():
                self._not_holding.set()
            while self._ended:
                slot = self._ended.pop()
                if process.stopping.is_set() or slot.drained:
                    done += 1
                    continue
                logger.error("slot task ended unexpectedly; starting a new one",
                             extra={"worker": slot.worker_id})
                tasks[slot] = self._start_slot(slot)
            if done == len(self.slots) and not process.stopping.is_set():
                process.stopping.set()  # --interval 0: every slot found every queue empty
            await asyncio.sleep(_TICK)

    # -- services for the slots -----------------------------------------------------------

    async def while_paused(self) -> None:
        """Wait while the process is paused (USR2) and not stopping."""
        if self.process.paused.is_set() and not self.process.stopping.is_set():
            self._unpaused.clear()
            await self._unpaused.wait()

    async def while_holding(self) -> None:
        """Wait while a Sentinel failover holds writes (one check per tick for every slot,
        not one timer per slot)."""
        if self.process.connections.holding() and not self.process.stopping.is_set():
            self._not_holding.clear()
            await self._not_holding.wait()

    async def in_redis_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """Run sync Redis code (on :attr:`sync_client`) in the small Redis thread pool."""
        return await self.loop.run_in_executor(self._redis_pool, fn, *args)

    async def in_job_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a sync job in the job thread pool."""
        return await self.loop.run_in_executor(self._job_pool, fn, *args)
