"""Registry: registration forms, lookup, decoding, middleware and current_job()."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, Callable

import pytest

from pyresqueworker.jobs.registry import (
    DontPerform,
    PayloadError,
    Registry,
    UnknownJobClass,
    current_job,
)
from pyresqueworker.protocol import failure
from pyresqueworker.protocol.job import Job, JobCall
from pyresqueworker.protocol.wire import dumps


def make_job(payload: Any, queue: str = "q") -> Job:
    return Job(queue, dumps(payload).encode(), payload if isinstance(payload, dict) else None)


def run(reg: Registry, class_name: str, *args: Any, **kwargs: Any) -> bool:
    job = make_job({"class": class_name, "args": list(args)})
    return reg.perform(job, JobCall(class_name, list(args), kwargs))


# -- registration forms -----------------------------------------------------------------


def test_function_registered_under_its_name_and_returned_as_its_handle() -> None:
    reg = Registry()
    seen: list[Any] = []

    def archive(x: int, y: str) -> None:
        seen.append((x, y))

    assert reg.job()(archive).__wrapped__ is archive
    handler = reg.handler("archive")
    assert handler.target is archive and not handler.is_async and not handler.is_class
    assert run(reg, "archive", 1, "tar") is True
    assert seen == [(1, "tar")]


def test_bare_decorator_and_custom_name_queue_timeout() -> None:
    reg = Registry()

    @reg.job
    def plain() -> str:
        return "p"

    @reg.job("Jobs::Archive", queue="files", timeout=30)
    def archive() -> str:
        return "a"

    assert reg.handler("plain").target is plain.__wrapped__
    handler = reg.handler("Jobs::Archive")
    assert (handler.target, handler.queue, handler.timeout) == (archive.__wrapped__, "files", 30)
    assert reg.queue_for("Jobs::Archive") == "files"
    assert reg.queue_for("plain") is None
    assert reg.queue_for("Nope") is None
    assert "plain" in reg and "archive" not in reg


def test_register_returns_handler_and_rejects_bad_arguments() -> None:
    reg = Registry()
    handler = reg.register("Echo", print, queue="q")
    assert handler.class_name == "Echo" and handler.queue == "q"
    with pytest.raises(ValueError, match="non-empty"):
        reg.register("", print)
    with pytest.raises(ValueError, match="timeout"):
        reg.register("T", print, timeout=0)
    with pytest.raises(TypeError, match="not callable"):
        reg.register("N", 42)


def test_duplicate_name_with_another_target_is_an_error() -> None:
    reg = Registry()

    def one() -> None: ...

    def two() -> None: ...

    reg.register("Job", one)
    reg.register("Job", one)  # the same target again is harmless (e.g. a re-import)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("Job", two)


def test_async_function_runs_through_asyncio_run_by_default() -> None:
    reg = Registry()
    seen: list[Any] = []

    @reg.job("Async")
    async def handler(x: int) -> None:
        await asyncio.sleep(0)
        seen.append(x)

    assert reg.handler("Async").is_async
    assert run(reg, "Async", 7) is True
    assert seen == [7]


def test_async_function_uses_the_given_run_async() -> None:
    reg = Registry()
    used: list[str] = []

    @reg.job("Async")
    async def handler() -> str:
        return "done"

    def run_async(coro: Coroutine[Any, Any, Any]) -> Any:
        used.append(type(coro).__name__)
        return asyncio.run(coro)

    job = make_job({"class": "Async", "args": []})
    assert reg.perform_call(job, JobCall("Async"), run_async=run_async) == (True, "done")
    assert used == ["coroutine"]


def test_sync_callable_returning_a_coroutine_is_awaited() -> None:
    reg = Registry()

    async def inner(x: int) -> int:
        return x * 2

    reg.register("Wrapped", lambda x: inner(x))
    assert not reg.handler("Wrapped").is_async
    job = make_job({"class": "Wrapped", "args": [4]})
    assert reg.perform_call(job, JobCall("Wrapped", [4])) == (True, 8)


class StaticJob:
    queue = "static-q"
    timeout = 5
    calls: list[Any] = []

    @staticmethod
    def perform(x: int) -> None:
        StaticJob.calls.append(x)


class ClassMethodJob:
    calls: list[Any] = []

    @classmethod
    def perform(cls, x: int) -> None:
        cls.calls.append((cls.__name__, x))


class InstanceJob:
    instances: list[InstanceJob] = []

    def __init__(self) -> None:
        InstanceJob.instances.append(self)
        self.args: list[Any] = []

    def perform(self, *args: Any) -> None:
        self.args.extend(args)


class AsyncClassJob:
    calls: list[Any] = []

    async def perform(self, x: int) -> None:
        AsyncClassJob.calls.append(x)


def test_class_with_staticmethod_perform_and_class_attributes() -> None:
    reg = Registry()
    assert reg.job()(StaticJob) is StaticJob
    handler = reg.handler("StaticJob")
    assert (handler.queue, handler.timeout, handler.instantiate) == ("static-q", 5.0, False)
    StaticJob.calls.clear()
    assert run(reg, "StaticJob", 3)
    assert StaticJob.calls == [3]


def test_explicit_queue_and_timeout_override_class_attributes() -> None:
    reg = Registry()
    handler = reg.register("S", StaticJob, queue="other", timeout=1.5)
    assert (handler.queue, handler.timeout) == ("other", 1.5)


def test_class_with_classmethod_perform() -> None:
    reg = Registry()
    reg.job("Jobs::ClassMethod")(ClassMethodJob)
    ClassMethodJob.calls.clear()
    run(reg, "Jobs::ClassMethod", 1)
    assert ClassMethodJob.calls == [("ClassMethodJob", 1)]


def test_class_with_instance_perform_gets_a_fresh_instance_per_job() -> None:
    reg = Registry()
    reg.job()(InstanceJob)
    assert reg.handler("InstanceJob").instantiate
    InstanceJob.instances.clear()
    run(reg, "InstanceJob", 1)
    run(reg, "InstanceJob", 2, 3)
    assert [i.args for i in InstanceJob.instances] == [[1], [2, 3]]


def test_class_with_async_instance_perform() -> None:
    reg = Registry()
    reg.job()(AsyncClassJob)
    assert reg.handler("AsyncClassJob").is_async
    AsyncClassJob.calls.clear()
    run(reg, "AsyncClassJob", 9)
    assert AsyncClassJob.calls == [9]


def test_class_without_perform_or_needing_arguments_is_rejected() -> None:
    reg = Registry()

    class NoPerform:
        pass

    class NeedsArgs:
        def __init__(self, x: int) -> None: ...

        def perform(self) -> None: ...

    with pytest.raises(TypeError, match="perform"):
        reg.job()(NoPerform)
    with pytest.raises(TypeError, match="no arguments"):
        reg.job()(NeedsArgs)


# -- lookup -----------------------------------------------------------------------------


def test_unknown_class_reads_like_rubys_name_error() -> None:
    reg = Registry()
    with pytest.raises(UnknownJobClass) as info:
        reg.handler("Foo")
    exc = info.value
    assert str(exc) == "uninitialized constant Foo"  # Ruby's text exactly
    assert exc.class_name == "Foo"
    assert failure.exception_name(exc) == "NameError"
    assert failure.exception_message(exc).startswith("uninitialized constant Foo")
    with pytest.raises(UnknownJobClass):
        reg.perform(make_job({"class": "Foo"}), JobCall("Foo"))


def test_lookup_follows_resque_constantize() -> None:
    reg = Registry()
    reg.register("JobName", print)
    reg.register("Archive", repr)
    assert reg.handler("job-name").target is print  # Resque classify: 'job-name' -> 'JobName'
    assert reg.handler("::Archive").target is repr
    with pytest.raises(UnknownJobClass):
        reg.handler("jobname")


# -- decoding ---------------------------------------------------------------------------


def test_default_decode() -> None:
    reg = Registry()
    call = reg.decode(make_job({"class": "Archive", "args": [35, "tar"], "extra": 1}))
    assert (call.class_name, call.args, call.kwargs) == ("Archive", [35, "tar"], {})


@pytest.mark.parametrize("payload", [{"class": "A"}, {"class": "A", "args": None}])
def test_missing_or_null_args_mean_no_arguments(payload: dict[str, Any]) -> None:
    assert Registry().decode(make_job(payload)).args == []


def test_decoded_args_are_a_copy() -> None:
    payload = {"class": "A", "args": [1]}
    call = Registry().decode(make_job(payload))
    call.args.append(2)
    assert payload["args"] == [1]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"class": "A", "args": "str"}, "args must be a JSON array, got string"),
        ({"class": "A", "args": {"a": 1}}, "args must be a JSON array, got object"),
        ({"class": "A", "args": 3}, "args must be a JSON array, got number"),
        ({"args": []}, 'payload has no "class"'),
        ({"class": "", "args": []}, '"class" must be a non-empty string, got string'),
        ({"class": 5, "args": []}, '"class" must be a non-empty string, got number'),
        ({"class": None}, '"class" must be a non-empty string, got null'),
    ],
)
def test_bad_payload_shapes(payload: dict[str, Any], message: str) -> None:
    with pytest.raises(PayloadError, match=message) as info:
        Registry().decode(make_job(payload))
    assert failure.exception_name(info.value) == "Resque::Helpers::DecodeException"


def test_undecodable_payload_reports_the_decode_error() -> None:
    job = Job("q", b"not json", None, decode_error="payload is not valid JSON: boom")
    with pytest.raises(PayloadError, match="not valid JSON: boom"):
        Registry().decode(job)
    with pytest.raises(PayloadError, match="could not be decoded"):
        Registry().decode(Job("q", b"?"))


def test_payload_that_is_not_an_object() -> None:
    job = Job("q", b"[1]", [1])  # type: ignore[arg-type]  # what a careless caller might pass
    with pytest.raises(PayloadError, match="must be a JSON object, got array"):
        Registry().decode(job)


def test_global_decoder_replaces_the_default() -> None:
    reg = Registry()
    reg.add_decoder(lambda job: JobCall("Global", [job.queue]))
    assert reg.decode(make_job({"class": "Anything"}, queue="q7")).args == ["q7"]


def test_per_class_decoder_wins_over_the_global_one() -> None:
    reg = Registry()
    reg.add_decoder(lambda job: JobCall("Global"))
    reg.add_decoder(lambda job: JobCall("Inner", (job.payload or {})["args"][0]),
                    class_name="Envelope")
    assert reg.decode(make_job({"class": "Envelope", "args": [[1, 2]]})) == JobCall(
        "Inner", [1, 2]
    )
    assert reg.decode(make_job({"class": "Other"})).class_name == "Global"


def test_job_decorator_registers_a_per_class_decoder() -> None:
    reg = Registry()

    def kw_decoder(job: Job) -> JobCall:
        assert job.payload is not None
        return JobCall("Kw", [], dict(job.payload["args"][0]))

    @reg.job("Kw", decoder=kw_decoder)
    def kw(*, a: int, b: int) -> int:
        return a + b

    job = make_job({"class": "Kw", "args": [{"a": 1, "b": 2}]})
    assert reg.perform_call(job, reg.decode(job)) == (True, 3)


def test_raising_decoder_is_wrapped_with_its_name_and_cause() -> None:
    reg = Registry()

    def broken_decoder(job: Job) -> JobCall:
        raise KeyError("missing")

    reg.add_decoder(broken_decoder, class_name="X")
    with pytest.raises(PayloadError) as info:
        reg.decode(make_job({"class": "X"}))
    assert "broken_decoder" in str(info.value) and "KeyError" in str(info.value)
    assert isinstance(info.value.__cause__, KeyError)


def test_decoder_errors_of_our_own_kinds_pass_through() -> None:
    reg = Registry()

    def unknown(job: Job) -> JobCall:
        raise UnknownJobClass("Inner")

    reg.add_decoder(unknown)
    with pytest.raises(UnknownJobClass, match="Inner"):
        reg.decode(make_job({"class": "X"}))


def test_decoder_returning_something_else_is_a_payload_error() -> None:
    reg = Registry()
    reg.add_decoder(lambda job: ("X", []))  # type: ignore[arg-type, return-value]
    with pytest.raises(PayloadError, match="not a JobCall"):
        reg.decode(make_job({"class": "X"}))


# -- middleware -------------------------------------------------------------------------


def test_middleware_runs_in_registration_order_outermost_first() -> None:
    reg = Registry()
    events: list[str] = []

    @reg.job("J")
    def handler() -> str:
        events.append("handler")
        return "result"

    def make(name: str) -> Callable[[Job, JobCall, Callable[[], Any]], Any]:
        def mw(job: Job, call: JobCall, call_next: Callable[[], Any]) -> Any:
            events.append(f"{name}:before:{call.class_name}")
            result = call_next()
            events.append(f"{name}:after:{result}")
            return result

        return mw

    assert reg.middleware(make("outer")) is not None
    reg.middleware(make("inner"))
    assert run(reg, "J") is True
    assert events == [
        "outer:before:J", "inner:before:J", "handler", "inner:after:result", "outer:after:result"
    ]


def test_middleware_short_circuit_skips_the_job() -> None:
    reg = Registry()
    ran: list[str] = []
    reg.register("J", lambda: ran.append("handler"))

    @reg.middleware
    def gate(job: Job, call: JobCall, call_next: Callable[[], Any]) -> Any:
        return None

    assert run(reg, "J") is False
    assert ran == []


def test_middleware_sees_and_may_replace_the_exception() -> None:
    reg = Registry()

    class Failing:
        failures: list[BaseException] = []

        @staticmethod
        def perform() -> None:
            raise ValueError("inner")

        @staticmethod
        def on_failure(exc: BaseException) -> None:
            Failing.failures.append(exc)

    reg.register("F", Failing)

    @reg.middleware
    def translate(job: Job, call: JobCall, call_next: Callable[[], Any]) -> Any:
        try:
            return call_next()
        except ValueError as exc:
            raise RuntimeError("translated") from exc

    with pytest.raises(RuntimeError, match="translated"):
        run(reg, "F")
    assert [str(e) for e in Failing.failures] == ["translated"]  # hooks get what escaped


# -- current_job() ----------------------------------------------------------------------


def test_current_job_inside_and_outside() -> None:
    reg = Registry()
    seen: list[tuple[Job, JobCall]] = []
    reg.register("Cur", lambda: seen.append(current_job()))
    job = make_job({"class": "Cur", "args": []})
    call = JobCall("Cur", [], {}, {"job_id": "x"})
    reg.perform(job, call)
    assert seen == [(job, call)]
    with pytest.raises(LookupError, match="outside a job"):
        current_job()


def test_current_job_is_reset_after_a_failure() -> None:
    reg = Registry()

    def boom() -> None:
        raise ValueError("x")

    reg.register("Boom", boom)
    with pytest.raises(ValueError):
        run(reg, "Boom")
    with pytest.raises(LookupError):
        current_job()


def test_current_job_inside_async_handler_on_another_loop_thread() -> None:
    """The worker runs coroutines on an event-loop thread; the job must still be visible."""
    reg = Registry()
    seen: list[str] = []

    @reg.job("AsyncCur")
    async def handler() -> None:
        seen.append(current_job()[1].class_name)

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        def run_async(coro: Coroutine[Any, Any, Any]) -> Any:
            return asyncio.run_coroutine_threadsafe(coro, loop).result()

        job = make_job({"class": "AsyncCur", "args": []})
        assert reg.perform(job, JobCall("AsyncCur"), run_async=run_async)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()
    assert seen == ["AsyncCur"]


def test_current_job_inside_async_handler_run_by_a_fresh_thread() -> None:
    """A run_async that does not carry the caller's context along (a new thread starts
    with an empty one) must still let the handler see its job."""
    reg = Registry()
    seen: list[str] = []

    @reg.job("FreshThread")
    async def handler() -> None:
        seen.append(current_job()[1].class_name)

    def run_async(coro: Coroutine[Any, Any, Any]) -> Any:
        errors: list[BaseException] = []

        def target() -> None:
            try:
                asyncio.run(coro)
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=target)
        thread.start()
        thread.join()
        if errors:
            raise errors[0]

    job = make_job({"class": "FreshThread", "args": []})
    assert reg.perform(job, JobCall("FreshThread"), run_async=run_async)
    assert seen == ["FreshThread"]


def test_dont_perform_from_the_handler_is_a_failure() -> None:
    """As in Ruby, only before_perform hooks may skip a job with DontPerform."""
    reg = Registry()

    def handler() -> None:
        raise DontPerform()

    reg.register("D", handler)
    with pytest.raises(DontPerform):
        run(reg, "D")


def test_module_level_helpers_use_the_default_registry() -> None:
    from pyresqueworker.jobs import registry as module

    @module.job("Tests::ModuleLevelHelper", queue="mlh")
    def helper() -> None: ...

    assert module.default_registry.handler("Tests::ModuleLevelHelper").target is helper.__wrapped__
    assert module.default_registry.queue_for("Tests::ModuleLevelHelper") == "mlh"
