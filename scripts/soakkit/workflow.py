"""The soak's workflow load: results, dependencies and batches (``docs/workflows.md``).

One thread per group (an :class:`~soakkit.enqueuer.Enqueuer` underneath: the same connection,
the same following of group ``b``'s master, the same error counts) makes a *round* every
:data:`EVERY` seconds:

* three **single** tracked jobs, each keeping its result (``SoakWfStep``, ``SoakWfAsync``,
  ``SoakWfFlaky``, which fails once and is retried);
* one **chain** of three, ``depends_on`` the step before, in one ``MULTI`` (so steps 2 and 3
  always wait); in a quarter of the chains step 1 is ``SoakWfFail``, so 2 and 3 must be
  canceled and never run;
* one **batch** of :data:`MEMBERS` jobs with ``on_success`` and ``on_complete`` callbacks sent
  to a queue no worker consumes (:func:`callback_queue`), each carrying the batch's *token*;
  in :data:`FAILING` of the batches a member or two fail on purpose (only ``on_complete`` is
  due). Group ``a``'s batches also hold Ruby members when :mod:`soakkit.ruby` runs.

Every job's id is the soak's own (``wa00000042``), also its first argument, so the ledger's runs
and the job's record name it alike; each Python job's expectation goes to the ledger too, so the
soak's "jobs lost" and "jobs run twice" count the workflow's jobs with the others. What each
write became, as the enqueuer says it: a reply is ``accepted``, an error reply ``refused``
(nothing applied), a connection lost mid-call ``uncertain``; in group ``b`` an accepted write
no replica acknowledged (``WAIT 1``) is ``uncertain`` too: a failover may take it away.
:mod:`soakkit.wfcheck` judges the end state.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import redis

from pyresqueworker import Client
from soakkit import ledger
from soakkit.enqueuer import WAIT_MS, Enqueuer
from soakkit.fleet import queues_of
from soakkit.ruby import QUEUE as RUBY_QUEUE

__all__ = ["EVERY", "MEMBERS", "RESULT_TTL", "Made", "Tracked", "WorkflowLoad",
           "callback_queue"]

EVERY = (3.0, 5.0)  # seconds between two rounds of one group (uniform)
MEMBERS = 100
FAILING = 0.3  # share of the batches with members that fail on purpose
FAILING_CHAINS = 0.25
RUBY_MEMBERS = 4  # per group a batch, when the Ruby worker runs
RESULT_TTL = 3600  # long enough for any soak: every kept result must still be there
CALLBACK = "SoakWfCallback"  # no worker has it; its queue is never consumed


def callback_queue(group: str) -> str:
    return f"soak_cb_{group}"


@dataclass
class Tracked:
    """One tracked job: ``design`` ``ok``, ``flaky`` (succeeds on its second run) or
    ``fail``; ``expect`` its result when it succeeds."""

    job_id: str
    cls: str
    design: str
    expect: Any = None
    ruby: bool = False


@dataclass
class Made:
    """One workflow write: ``single`` (one tracked job), ``chain`` or ``batch``."""

    kind: str
    group: str
    token: str
    at: float
    jobs: list[Tracked] = field(default_factory=list)
    status: str = ""  # accepted, refused or uncertain (see the module)
    batch_id: str = ""
    failing: bool = False  # a chain whose step 1 fails; a batch with failing members


class WorkflowLoad(Enqueuer):
    """Makes a workflow round of ``group`` every :data:`EVERY` s while ``active``; every
    write is kept in :attr:`made` for the verdict."""

    def __init__(self, group: str, connect: Callable[[], redis.Redis],
                 ledger_conn: redis.Redis, rng: random.Random, wait_replicas: bool,
                 master: Optional[Callable[[], int]] = None, ruby: bool = False) -> None:
        super().__init__(group, connect, ledger_conn, rng, 0, wait_replicas, master)
        self.name = f"workflow-{group}"
        self.ruby = ruby
        self.made: list[Made] = []
        self._due = 0.0
        self._serial = 0

    def _tick(self) -> None:
        if time.monotonic() < self._due:
            return
        self._due = time.monotonic() + self.rng.uniform(*EVERY)
        self._follow_master()
        for make in (self._single, self._single, self._single, self._chain, self._batch):
            made = make()
            self.made.append(made)
            self.counts[(f"wf_{made.kind}", made.status)] += 1
            self._expect(made)
            if made.status != "accepted":
                return  # Redis is away, full or read-only: the next round starts afresh

    def _expect(self, made: Made) -> None:
        """Write the Python jobs' expectations to the ledger, as the enqueuer does its own:
        "jobs lost" and "jobs run twice" count them too (not the steps a failing chain
        cancels, which must never run: :mod:`soakkit.wfcheck`; nor the Ruby members, which
        write no ledger events)."""
        records = [
            ledger.Enqueued(job.job_id, self.group, f"wf_{job.design}", job.cls,
                            "fail" if job.design == "fail" else "ok", made.status, made.at,
                            fails=int(job.design == "flaky"))
            for index, job in enumerate(made.jobs)
            if not job.ruby and not (made.kind == "chain" and made.failing and index > 0)]
        pairs = [part for r in records for part in (r.job_id, r.to_json())]
        if pairs:
            ledger.with_patience(lambda: self.ledger.hset(ledger.EXPECTED, items=pairs))

    def _id(self) -> str:
        self._serial += 1
        return f"w{self.group}{self._serial:08d}"

    def _made(self, kind: str) -> Made:
        return Made(kind, self.group, f"{self.group}-{kind}-{self._serial + 1}", time.time())

    def _step(self, design: str, cls: Optional[str] = None) -> tuple[Tracked, list[Any]]:
        """A Python job of ``design``: its record, and its args."""
        job_id, number, sleep_ms = self._id(), self.rng.randrange(1000), self.rng.randint(20, 100)
        if design == "fail":
            return Tracked(job_id, "SoakWfFail", design), [job_id, sleep_ms]
        if design == "flaky":
            return (Tracked(job_id, "SoakWfFlaky", design, [job_id, number * number]),
                    [job_id, number, sleep_ms, 1])
        cls = cls or self.rng.choice(("SoakWfStep", "SoakWfAsync"))
        return Tracked(job_id, cls, design, [job_id, number * number]), [job_id, number, sleep_ms]

    def _single(self) -> Made:
        made = self._made("single")
        design = self.rng.choices(("ok", "flaky"), weights=(4, 1))[0]
        job, args = self._step(design)
        made.jobs.append(job)
        main, _ = queues_of(self.group)
        made.status = self._write(lambda c: c.enqueue_to(main, job.cls, *args, job_id=job.job_id,
                                                          result_ttl=RESULT_TTL))
        return made

    def _chain(self) -> Made:
        made = self._made("chain")
        made.failing = self.rng.random() < FAILING_CHAINS
        steps = [self._step("fail" if made.failing else "ok", "SoakWfStep"),
                 self._step("ok", "SoakWfAsync"), self._step("ok", "SoakWfStep")]
        made.jobs = [job for job, _ in steps]
        main, _ = queues_of(self.group)

        def write(client: Client) -> None:
            with client.redis.pipeline(transaction=True) as pipe:
                before: list[str] = []
                for job, args in steps:
                    client.enqueue_to(main, job.cls, *args, job_id=job.job_id,
                                      result_ttl=RESULT_TTL, depends_on=before, pipeline=pipe)
                    before = [job.job_id]
                pipe.execute()

        made.status = self._write(write)
        return made

    def _batch(self) -> Made:
        made = self._made("batch")
        made.failing = self.rng.random() < FAILING
        ruby = RUBY_MEMBERS if self.ruby else 0
        designs = ["flaky"] * 2 + ["fail"] * (made.failing + (made.failing and not ruby))
        designs += ["ok"] * (MEMBERS - ruby - len(designs))
        self.rng.shuffle(designs)
        main, _ = queues_of(self.group)
        members: list[tuple[str, Tracked, list[Any]]] = []
        for design in designs:
            job, args = self._step(design)
            members.append((main, job, args))
        for index in range(ruby):
            job_id, number = self._id(), self.rng.randrange(1000)
            if made.failing and index == 0:
                members.append((RUBY_QUEUE, Tracked(job_id, "RubyBoom", "fail", ruby=True),
                                [job_id]))
            else:
                members.append((RUBY_QUEUE, Tracked(job_id, "RubySquare", "ok", number * number,
                                                    ruby=True), [number]))
        made.jobs = [job for _, job, _ in members]

        def write(client: Client) -> None:
            with client.batch(on_success=(CALLBACK, ["success", made.token]),
                              on_complete=(CALLBACK, ["complete", made.token]),
                              queue=callback_queue(self.group), result_ttl=RESULT_TTL,
                              description=made.token) as batch:
                made.batch_id = batch.id
                for queue, job, args in members:
                    batch.enqueue_to(queue, job.cls, *args, job_id=job.job_id)

        made.status = self._write(write)
        return made

    def _write(self, write: Callable[[Client], object]) -> str:
        """Run one workflow write; what it became (see the module)."""
        try:
            client = self._client_now()
            write(client)
        except (redis.BusyLoadingError, redis.ResponseError) as exc:
            self.errors[type(exc).__name__] += 1
            return "refused"  # an error reply: Redis did not apply it
        except redis.RedisError as exc:
            self.errors[type(exc).__name__] += 1
            self._drop_client()
            return "uncertain"
        return "accepted" if self._replicated(client) else "uncertain"

    def _replicated(self, client: Client) -> bool:
        """Group ``b``: did a replica acknowledge this connection's writes?"""
        if not self.wait_replicas:
            return True
        if self._client is not client:
            return False
        try:
            conn: Any = client.redis  # execute_command is untyped in redis-py
            return int(conn.execute_command("WAIT", 1, WAIT_MS)) >= 1
        except redis.RedisError as exc:
            self.errors[type(exc).__name__] += 1
            self._drop_client()
            return False
