"""Tables, ages, JSON and the progress line of the ``pyresque`` CLI (pure functions)."""

from __future__ import annotations

import io
import json

import click
import pytest
from click.testing import CliRunner

from pyresqueworker.cli.admin import render
from pyresqueworker.cli.admin.render import (
    ProgressLine,
    clean,
    display_width,
    format_age,
    format_duration,
    format_ms,
    key_values,
    table,
    truncate,
)


def test_table_aligns_columns_and_right_aligns_numbers() -> None:
    text = table(["NAME", "SIZE", "NOTE"], [["high", 5, "x"], ["a-longer-name", 1234, ""]],
                 right=(1,))
    assert text.splitlines() == [
        "NAME           SIZE  NOTE",
        "high              5  x",
        "a-longer-name  1234",
    ]


def test_table_narrows_the_widest_columns_to_fit_the_width() -> None:
    rows = [["w1", "x" * 60, "y" * 30], ["w2", "short", "z"]]
    lines = table(["ID", "ERROR", "ARGS"], rows, width=50).splitlines()
    assert all(display_width(line) <= 50 for line in lines)
    assert lines[1].startswith("w1  xxx") and "…" in lines[1]
    assert lines[2].split() == ["w2", "short", "z"]
    # without a width (piped output) nothing is cut
    assert "x" * 60 in table(["ID", "ERROR", "ARGS"], rows)


def test_table_never_narrows_a_column_below_its_header() -> None:
    lines = table(["IDENTIFIER", "B"], [["a" * 40, "b" * 40]], width=10).splitlines()
    assert lines[0].startswith("IDENTIFIER")
    assert lines[1].startswith("aaaaaaaaa…")


def test_cells_are_one_line_with_controls_escaped() -> None:
    assert clean("a\nb\tc") == "a b c"
    assert clean("\x1b[31mred\x9b\u202e") == "\\x1b[31mred\\x9b\\u202e"
    assert clean(None) == "-" and clean(12) == "12"
    assert clean("line1\nline2\x07", multiline=True) == "line1\nline2\\x07"
    text = table(["A"], [["\x1b]0;title\x07"]])
    assert "\x1b" not in text and "\x07" not in text


def test_wide_characters_count_two_columns() -> None:
    assert display_width("日本") == 4 and display_width("e\u0301") == 1
    assert truncate("日本語テキスト", 6) == "日本…"
    assert truncate("short", 10) == "short" and truncate("abc", 0) == ""
    lines = table(["X", "Y"], [["日本", "1"], ["ab", "2"]]).splitlines()
    assert lines[1] == "日本  1" and lines[2] == "ab    2"


def test_huge_cells_are_bounded() -> None:
    text = table(["A"], [["x" * 10_000_000]])
    assert len(text.splitlines()[1]) <= render.MAX_CELL


@pytest.mark.parametrize(("seconds", "shown"), [
    (None, "-"), (0, "0s"), (59.9, "59s"), (60, "1m 0s"), (3725, "1h 2m"), (90061, "1d 1h"),
    (-5, "0s"),
])
def test_format_duration(seconds: float | None, shown: str) -> None:
    assert format_duration(seconds) == shown


@pytest.mark.parametrize(("moment", "shown"), [
    (None, "-"), (1000, "0s ago"), (997, "3s ago"), (880, "2m ago"), (1000 - 7300, "2h ago"),
    (1000 - 3 * 86400, "3d ago"), (1300, "in 5m"), (1000.4, "0s ago"),
])
def test_format_age(moment: float | None, shown: str) -> None:
    assert format_age(moment, 1000.0) == shown


@pytest.mark.parametrize(("ms", "shown"), [
    (0.42, "0.4ms"), (12.4, "12ms"), (999, "999ms"), (3210, "3.2s"), (125_000, "2m 5s"),
])
def test_format_ms(ms: float, shown: str) -> None:
    assert format_ms(ms) == shown


def test_key_values_aligns_and_indents_continuation_lines() -> None:
    assert key_values([("a", 1), ("longer", "x\ny"), ("c", None)]).splitlines() == [
        "a       1", "longer  x", "        y", "c       -"]


def test_echo_json_is_valid_json_with_terminal_controls_escaped() -> None:
    value = {"text": "\x1b[2J\x9b\u2028é", "n": 1, "none": None}
    @click.command()
    def show() -> None:
        render.echo_json(value)

    result = CliRunner().invoke(show)
    assert "\x9b" not in result.stdout and "\u2028" not in result.stdout
    assert "\x1b" not in result.stdout and "é" in result.stdout
    assert json.loads(result.stdout) == value


def test_progress_line_redraws_in_place_and_ends_the_line() -> None:
    stream = io.StringIO()
    line = ProgressLine("examined", enabled=True, stream=stream, every=0)
    line(500, 2000)
    line(2000, 2000)
    line.finish()
    assert stream.getvalue() == ("\rexamined: 500 / 2,000 (25%)\rexamined: 2,000 / 2,000 (100%)"
                                 "\n")


def test_progress_line_is_silent_when_disabled_or_off_a_terminal() -> None:
    stream = io.StringIO()  # not a terminal
    line = ProgressLine("examined", stream=stream)
    line(1, 2)
    line.finish()
    assert stream.getvalue() == ""


def test_progress_line_throttles_but_always_draws_the_end() -> None:
    stream = io.StringIO()
    line = ProgressLine("n", enabled=True, stream=stream, every=3600)
    for done in range(1, 101):
        line(done, 100)
    assert stream.getvalue() == "\rn: 1 / 100 (1%)\rn: 100 / 100 (100%)"


def test_free_text_columns_give_way_first() -> None:
    rows = [["1", "Archive::Job", "x" * 80]]
    lines = table(["ID", "CLASS", "ERROR"], rows, width=50, shrink_first=(2,)).splitlines()
    assert lines[1].startswith("1   Archive::Job  xxx") and display_width(lines[1]) == 50
    # but never below 24 columns while another column could give way
    rows = [["1", "C" * 40, "x" * 80]]
    lines = table(["ID", "CLASS", "ERROR"], rows, width=60, shrink_first=(2,)).splitlines()
    assert display_width(lines[1]) == 60
    assert lines[1].split()[2].startswith("x" * 23)
