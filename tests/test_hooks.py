"""Job class hooks with Ruby Resque's semantics (spec §13, resque lib/resque/job.rb)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from pyresqueworker.jobs.registry import DontPerform, Registry
from pyresqueworker.protocol.job import Job, JobCall
from pyresqueworker.protocol.wire import dumps


def perform(reg: Registry, name: str, *args: Any, **kwargs: Any) -> bool:
    payload = {"class": name, "args": list(args)}
    job = Job("q", dumps(payload).encode(), payload)
    return reg.perform(job, JobCall(name, list(args), kwargs))


class Base:
    """Hooks on a base class are found too, and sort together with the subclass's."""

    events: list[Any] = []

    @classmethod
    def before_perform_b(cls, *args: Any) -> None:
        cls.events.append(("before_perform_b", args))


class Ordered(Base):
    events: list[Any] = []

    @classmethod
    def before_perform_a(cls, *args: Any) -> None:
        cls.events.append(("before_perform_a", args))

    @classmethod
    def before_perform(cls, *args: Any) -> None:
        cls.events.append(("before_perform", args))

    @classmethod
    def around_perform(cls, *args: Any) -> Iterator[None]:
        cls.events.append("around_perform:enter")
        yield
        cls.events.append("around_perform:exit")

    @classmethod
    def around_perform_inner(cls, *args: Any) -> Iterator[None]:
        cls.events.append("around_perform_inner:enter")
        yield
        cls.events.append("around_perform_inner:exit")

    @classmethod
    def perform(cls, *args: Any) -> None:
        cls.events.append(("perform", args))

    @classmethod
    def after_perform_z(cls, *args: Any) -> None:
        cls.events.append("after_perform_z")

    @classmethod
    def after_perform(cls, *args: Any) -> None:
        cls.events.append("after_perform")

    @classmethod
    def on_failure(cls, exc: BaseException, *args: Any) -> None:
        cls.events.append("on_failure")


def test_full_hook_order_sorted_names_and_around_nesting() -> None:
    reg = Registry()
    reg.job()(Ordered)
    handler = reg.handler("Ordered")
    assert handler.before_hooks == ("before_perform", "before_perform_a", "before_perform_b")
    assert handler.around_hooks == ("around_perform", "around_perform_inner")
    Ordered.events = []
    assert perform(reg, "Ordered", 1, "x") is True
    assert Ordered.events == [
        ("before_perform", (1, "x")),
        ("before_perform_a", (1, "x")),
        ("before_perform_b", (1, "x")),
        "around_perform:enter",
        "around_perform_inner:enter",
        ("perform", (1, "x")),
        "around_perform_inner:exit",
        "around_perform:exit",
        "after_perform",
        "after_perform_z",
    ]


class Skipping:
    events: list[str] = []

    @staticmethod
    def before_perform(*args: Any) -> None:
        Skipping.events.append("before_perform")
        raise DontPerform()

    @staticmethod
    def before_perform_later(*args: Any) -> None:
        Skipping.events.append("before_perform_later")

    @staticmethod
    def perform(*args: Any) -> None:
        Skipping.events.append("perform")

    @staticmethod
    def after_perform(*args: Any) -> None:
        Skipping.events.append("after_perform")

    @staticmethod
    def on_failure(exc: BaseException, *args: Any) -> None:
        Skipping.events.append("on_failure")


def test_dont_perform_in_before_hook_skips_quietly() -> None:
    reg = Registry()
    reg.job()(Skipping)
    Skipping.events = []
    assert perform(reg, "Skipping") is False
    assert Skipping.events == ["before_perform"]


class NotYielding:
    events: list[str] = []

    @staticmethod
    def around_perform(*args: Any) -> Iterator[None]:
        NotYielding.events.append("outer:enter")
        yield
        NotYielding.events.append("outer:exit")

    @staticmethod
    def around_perform_gate(*args: Any) -> Iterator[None]:
        NotYielding.events.append("gate")
        return
        yield  # pragma: no cover - makes this a generator that never yields

    @staticmethod
    def around_perform_zinner(*args: Any) -> Iterator[None]:
        NotYielding.events.append("zinner")
        yield

    @staticmethod
    def perform() -> None:
        NotYielding.events.append("perform")

    @staticmethod
    def after_perform() -> None:
        NotYielding.events.append("after_perform")


def test_around_hook_that_does_not_yield_skips_perform() -> None:
    """Ruby: the inner hooks and perform do not run, the outer hook resumes, after hooks
    still run, and Job#perform returns false."""
    reg = Registry()
    reg.job()(NotYielding)
    NotYielding.events = []
    assert perform(reg, "NotYielding") is False
    assert NotYielding.events == ["outer:enter", "gate", "outer:exit", "after_perform"]


class Failing:
    events: list[Any] = []

    @staticmethod
    def around_perform(*args: Any, **kwargs: Any) -> Iterator[None]:
        try:
            yield
        except ValueError as exc:
            Failing.events.append(f"around saw {exc}")
            raise

    @staticmethod
    def perform(x: int, *, flag: bool = False) -> None:
        raise ValueError(f"bad {x}")

    @staticmethod
    def after_perform(*args: Any, **kwargs: Any) -> None:
        Failing.events.append("after_perform")

    @staticmethod
    def on_failure(exc: BaseException, *args: Any, **kwargs: Any) -> None:
        Failing.events.append(("on_failure", type(exc).__name__, str(exc), args, kwargs))

    @staticmethod
    def on_failure_broken(exc: BaseException, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("hook bug")

    @staticmethod
    def on_failure_last(exc: BaseException, *args: Any, **kwargs: Any) -> None:
        Failing.events.append("on_failure_last")


def test_on_failure_gets_the_exception_and_args_and_hook_errors_are_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reg = Registry()
    reg.job()(Failing)
    Failing.events = []
    with caplog.at_level(logging.ERROR, logger="pyresqueworker.registry"), pytest.raises(
        ValueError, match="bad 3"
    ):
        perform(reg, "Failing", 3, flag=True)
    assert Failing.events == [
        "around saw bad 3",
        ("on_failure", "ValueError", "bad 3", (3,), {"flag": True}),
        "on_failure_last",
    ]
    assert "on_failure_broken" in caplog.text and "hook bug" in caplog.text


class Suppressing:
    @staticmethod
    def around_perform() -> Iterator[None]:
        try:
            yield
        except ValueError:
            pass  # like a with-block that swallows the error

    @staticmethod
    def perform() -> None:
        raise ValueError("swallowed")


def test_around_hook_may_swallow_the_error_but_the_job_was_not_performed() -> None:
    reg = Registry()
    reg.job()(Suppressing)
    assert perform(reg, "Suppressing") is False


def test_around_hook_yielding_twice_is_an_error() -> None:
    class Twice:
        @staticmethod
        def around_perform() -> Iterator[None]:
            yield
            yield

        @staticmethod
        def perform() -> None: ...

    reg = Registry()
    reg.job()(Twice)
    with pytest.raises(RuntimeError, match="yielded more than once"):
        perform(reg, "Twice")


@pytest.mark.parametrize("where", ["before_perform", "after_perform"])
def test_errors_in_before_and_after_hooks_are_failures(where: str) -> None:
    seen: list[str] = []

    def boom(*args: Any) -> None:
        raise KeyError(where)

    def record(exc: BaseException, *args: Any) -> None:
        seen.append(type(exc).__name__)

    job_class = type(
        "HookFail",
        (),
        {"perform": staticmethod(lambda: None), where: staticmethod(boom),
         "on_failure": staticmethod(record)},
    )
    reg = Registry()
    reg.register("HookFail", job_class)
    with pytest.raises(KeyError):
        perform(reg, "HookFail")
    assert seen == ["KeyError"]


def test_dont_perform_outside_before_hooks_is_a_failure() -> None:
    """Ruby rescues DontPerform only around the before hooks."""

    class Late:
        failures: list[str] = []

        @staticmethod
        def perform() -> None:
            raise DontPerform()

        @staticmethod
        def on_failure(exc: BaseException) -> None:
            Late.failures.append(type(exc).__name__)

    reg = Registry()
    reg.job()(Late)
    with pytest.raises(DontPerform):
        perform(reg, "Late")
    assert Late.failures == ["DontPerform"]


class WithState:
    """Instance hooks share the per-job instance with perform."""

    log: list[Any] = []

    def __init__(self) -> None:
        self.steps: list[str] = []

    def before_perform(self, *args: Any) -> None:
        self.steps.append("before")

    def around_perform(self, *args: Any) -> Iterator[None]:
        self.steps.append("around")
        yield

    def perform(self, *args: Any) -> None:
        self.steps.append("perform")

    def after_perform(self, *args: Any) -> None:
        self.steps.append("after")
        WithState.log.append((id(self), list(self.steps)))


def test_instance_hooks_share_one_instance_per_job() -> None:
    reg = Registry()
    reg.job()(WithState)
    WithState.log = []
    perform(reg, "WithState")
    perform(reg, "WithState")
    assert [steps for _, steps in WithState.log] == [["before", "around", "perform", "after"]] * 2


def test_kwargs_reach_every_hook() -> None:
    seen: list[Any] = []

    class Kw:
        @staticmethod
        def before_perform(*args: Any, **kwargs: Any) -> None:
            seen.append(("before", args, kwargs))

        @staticmethod
        def perform(a: int, *, b: int) -> None:
            seen.append(("perform", a, b))

        @staticmethod
        def after_perform(*args: Any, **kwargs: Any) -> None:
            seen.append(("after", args, kwargs))

    reg = Registry()
    reg.job()(Kw)
    perform(reg, "Kw", 1, b=2)
    assert seen == [("before", (1,), {"b": 2}), ("perform", 1, 2), ("after", (1,), {"b": 2})]


def test_hooks_are_checked_at_registration() -> None:
    class NotGenerator:
        @staticmethod
        def around_perform() -> None: ...

        @staticmethod
        def perform() -> None: ...

    class AsyncHook:
        @staticmethod
        async def before_perform() -> None: ...

        @staticmethod
        def perform() -> None: ...

    reg = Registry()
    with pytest.raises(TypeError, match="generator function"):
        reg.job()(NotGenerator)
    with pytest.raises(TypeError, match="must not be async"):
        reg.job()(AsyncHook)


def test_non_callable_attributes_with_hook_names_are_ignored() -> None:
    class Flags:
        before_perform_enabled = True

        @staticmethod
        def perform() -> None: ...

    reg = Registry()
    reg.job()(Flags)
    assert reg.handler("Flags").before_hooks == ()


def test_run_failure_hooks_for_dirty_exits() -> None:
    seen: list[Any] = []

    class Dirty:
        @staticmethod
        def perform(*args: Any) -> None: ...

        @staticmethod
        def on_failure(exc: BaseException, *args: Any) -> None:
            seen.append((str(exc), args))

    reg = Registry()
    reg.job()(Dirty)
    payload = {"class": "Dirty", "args": [1, 2]}
    reg.run_failure_hooks(Job("q", dumps(payload).encode(), payload), RuntimeError("killed"))
    assert seen == [("killed", (1, 2))]
    # Ruby skips the hooks when the class cannot be resolved, and so when the payload is bad.
    unknown = {"class": "Unknown", "args": []}
    reg.run_failure_hooks(Job("q", dumps(unknown).encode(), unknown), RuntimeError("x"))
    reg.run_failure_hooks(Job("q", b"nope", None, decode_error="bad"), RuntimeError("x"))
    assert len(seen) == 1


def test_a_handler_that_returns_a_generator_fails_instead_of_succeeding() -> None:
    from pyresqueworker.jobs.registry import Registry
    from pyresqueworker.protocol.job import Job

    registry = Registry()
    ran: list[int] = []

    @registry.job("Gen")
    def gen(n: int) -> Any:
        ran.append(n)
        yield n

    job = Job(queue="q", raw=b'{"class":"Gen","args":[1]}', worker_id="w")
    job.payload = {"class": "Gen", "args": [1]}
    with pytest.raises(TypeError, match="returned a generator"):
        registry.perform(job, registry.decode(job))
    assert ran == []


def test_a_sync_handler_handing_back_a_coroutine_has_it_run() -> None:
    from pyresqueworker.jobs.registry import Registry
    from pyresqueworker.protocol.job import Job

    registry = Registry()
    ran: list[int] = []

    async def work(n: int) -> None:
        ran.append(n)

    @registry.job("Hands")
    def hands(n: int) -> Any:
        return work(n)

    job = Job(queue="q", raw=b'{"class":"Hands","args":[2]}', worker_id="w")
    job.payload = {"class": "Hands", "args": [2]}
    assert registry.perform(job, registry.decode(job))
    assert ran == [2]
