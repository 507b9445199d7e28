"""Queue lists: goworker weights, Resque strict order, dynamic globs and exclusions."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from pyresqueworker.protocol.queues import QueueSpec, QueueSpecError, closest_queue


def test_strict_order_without_weights() -> None:
    spec = QueueSpec.parse("high, low")
    assert not spec.weighted and not spec.dynamic
    assert spec.id_queues == ("high", "low")
    rng = random.Random(1)
    assert {tuple(spec.order(spec.expand(), spec.weighted, rng)) for _ in range(50)} == {
        ("high", "low")
    }


def test_weights_make_a_queue_first_with_probability_weight_over_total() -> None:
    spec = QueueSpec.parse("high=2,low=1")
    assert spec.weighted and spec.id_queues == ("high", "low")
    rng = random.Random(42)
    firsts = Counter(spec.order(spec.expand(), True, rng)[0] for _ in range(30000))
    assert firsts["high"] / 30000 == pytest.approx(2 / 3, abs=0.02)
    orders = {tuple(spec.order(spec.expand(), True, rng)) for _ in range(100)}
    assert orders == {("high", "low"), ("low", "high")}


def test_goworker_edge_cases_and_duplicates() -> None:
    assert QueueSpec.parse("high=2,,,low").patterns == ("high", "low")
    assert QueueSpec.parse("a=1,a=2").weights == (3,)
    assert str(QueueSpec.parse("high=2,low=1")) == "high=2,low=1"


@pytest.mark.parametrize("text", ["", ",", "high=x", "=1", "high=0", "a:b", "!", "a b", "a\tb",
                                  "!x y", "mail\x00"])
def test_bad_specs_are_refused_with_a_message(text: str) -> None:
    with pytest.raises(QueueSpecError):
        QueueSpec.parse(text)


def test_star_is_every_known_queue_alphabetically() -> None:
    spec = QueueSpec.parse("*")
    assert spec.dynamic and spec.id_queues == ("*",)
    assert [q for q, _ in spec.expand(["b", "a", "c"])] == ["a", "b", "c"]


def test_globs_sorted_per_pattern_then_concatenated_and_deduplicated() -> None:
    spec = QueueSpec.parse("mail_*,high,*")
    known = ["mail_b", "mail_a", "high", "low", "zed"]
    assert [q for q, _ in spec.expand(known)] == ["mail_a", "mail_b", "high", "low", "zed"]


def test_exclusions_remove_matches_and_are_not_in_the_id() -> None:
    spec = QueueSpec.parse("*,!slow*")
    assert spec.id_queues == ("*",)
    assert [q for q, _ in spec.expand(["fast", "slow1", "slow2"])] == ["fast"]


def test_braces_are_literal_and_dotfiles_need_a_dot() -> None:
    spec = QueueSpec.parse("{a,b}*,.x*")
    assert spec.patterns == ("{a", "b}*", ".x*")
    assert [q for q, _ in QueueSpec.parse("*").expand([".hidden", "seen"])] == ["seen"]


def test_the_queues_named_outright_and_the_closest_known_name() -> None:
    # What the worker's start-up check and `pyresque pause` look up (globs match, never miss).
    assert QueueSpec.parse("hihg=2,mail_*=1,*=1,low=1,!slwo").named == ("hihg", "low")
    known = ["high", "low", "mailers"]
    assert closest_queue("hihg", known) == "high"
    assert closest_queue("mailer", known) == "mailers"
    assert closest_queue("zzqqx", known) is None  # nothing close: no guess
    assert closest_queue("low", ["low"]) is None  # a name is not its own typo
