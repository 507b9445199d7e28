"""Retry policies: delays per strategy, jitter bounds, validation, and resque-retry's key."""

from __future__ import annotations

import hashlib

import pytest

from pyresqueworker.jobs.retry import Retry, retry_key_suffix, ruby_join


def test_exponential_linear_fixed_and_custom_delays() -> None:
    assert [Retry(backoff="exponential", base=3).delay(n) for n in (1, 2, 3)] == [3, 9, 27]
    assert [Retry(backoff="linear", base=5).delay(n) for n in (1, 2, 3)] == [5, 10, 15]
    assert [Retry(backoff="fixed", base=7).delay(n) for n in (1, 2, 3)] == [7, 7, 7]
    assert [Retry(backoff=lambda n: n * 100).delay(n) for n in (1, 2)] == [100, 200]


def test_jitter_stays_within_half_to_one_and_a_half_of_the_delay() -> None:
    policy = Retry(backoff="exponential", base=2, jitter=True)
    assert policy.delay(3, rand=lambda lo, hi: lo) == 4.0
    assert policy.delay(3, rand=lambda lo, hi: hi) == 12.0
    assert all(4.0 <= policy.delay(3) <= 12.0 for _ in range(200))


def test_max_delay_caps_and_huge_exponents_do_not_overflow() -> None:
    assert Retry(base=10, max_delay=60).delay(5) == 60
    assert Retry(base=10, max_delay=3600).delay(10_000) == 3600


@pytest.mark.parametrize("kwargs", [
    {"max": -1}, {"max": 1.5}, {"backoff": "quadratic"}, {"base": -1}, {"base": float("nan")},
    {"max_delay": -5},
])
def test_bad_policies_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises((ValueError, TypeError)):
        Retry(**kwargs)  # type: ignore[arg-type]


def test_fatal_exceptions_and_their_subclasses_are_not_retried() -> None:
    policy = Retry(fatal=(LookupError,))
    assert not policy.retries(KeyError("x"))
    assert policy.retries(RuntimeError("x"))
    assert Retry(fatal=ValueError).fatal == (ValueError,)  # type: ignore[arg-type]


def test_an_override_round_trips_through_json_and_bad_ones_are_refused() -> None:
    policy = Retry(max=4, backoff="linear", base=2.5, jitter=True, max_delay=30)
    assert Retry.from_json(policy.to_json()) == policy
    with pytest.raises(ValueError):
        Retry(backoff=lambda n: 1.0).to_json()
    for bad in ([], {"max": "x"}, {"bogus": 1}, {"backoff": "nope"}):
        with pytest.raises(ValueError):
            Retry.from_json(bad)


def test_ruby_array_join_and_resque_retry_key() -> None:
    # spec §19: ["a",1,[2,[3]],{"k"=>1},nil,1.5].join("-") in Ruby 3.1
    assert ruby_join(["a", 1, [2, [3]], {"k": 1}, None, 1.5]) == 'a-1-2-3-{"k"=>1}--1.5'
    assert ruby_join([True, 1.0e20]) == "true-1.0e+20"
    digest = hashlib.sha1(b"hi-there").hexdigest()
    assert retry_key_suffix("Archive", ["hi", "there"]) == f"resque-retry:Archive:{digest}"
    assert retry_key_suffix("Archive", []) == "resque-retry:Archive"
    assert " " not in retry_key_suffix("Name With Space", ["a b"])
