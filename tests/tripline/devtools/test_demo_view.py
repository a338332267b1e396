"""What the demo shows: its figures, the record it points at, the summary, the plain lines."""

from __future__ import annotations

import io
from typing import Any
from urllib.parse import unquote

import pytest
from rich.console import Console

from tripline.devtools.demo_view import (
    Figures,
    LinesView,
    figures,
    next_steps,
    pick_record,
    record_url,
    results_line,
    summary,
)

COUNTERS = {
    "accepted": {"-": 9},
    "called": {"-": 2},
    "suppressed": {"cooldown": 4, "duplicate": 1},
    "deferred": {"do_not_call": 1},
    "rejected": {"invalid_json": 1},
    "route_failed": {"-": 3},  # not an outcome: never counted as decided
}


def _figures(**overrides: Any) -> Figures:
    base: dict[str, Any] = {
        "total": 10,
        "published": 10,
        "accepted": 9,
        "decided": 9,
        "called": 2,
        "following": 1,
        "results": {},
    }
    return Figures(**{**base, **overrides})


def _console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=80, highlight=False, markup=False), out


@pytest.mark.parametrize(
    ("counters", "accepted", "decided", "called"),
    [
        pytest.param(COUNTERS, 9, 9, 2, id="every-outcome-counts-as-decided-nothing-else"),
        pytest.param({}, 0, 0, 0, id="nothing-yet"),
        pytest.param({"accepted": {"-": 5}}, 5, 0, 0, id="accepted-not-yet-decided"),
        pytest.param({"rejected": {"invalid_json": 2, "too_large": 1}}, 0, 3, 0, id="rejections"),
    ],
)
def test_figures_from_the_counters(
    counters: dict[str, dict[str, int]], accepted: int, decided: int, called: int
) -> None:
    now = figures(counters, {"reached": 1}, total=10, published=7, following=1)
    assert (now.accepted, now.decided, now.called) == (accepted, decided, called)
    assert (now.total, now.published, now.following) == (10, 7, 1)
    assert now.results == {"reached": 1}


@pytest.mark.parametrize(
    ("called", "following", "followed"),
    [
        pytest.param(3, 1, 2, id="ended-ladders"),
        pytest.param(3, 0, 3, id="all-ended"),
        # The follow index can hold a ladder before the call is counted: never negative.
        pytest.param(0, 1, 0, id="index-ahead-of-the-counter"),
    ],
)
def test_calls_followed(called: int, following: int, followed: int) -> None:
    assert _figures(called=called, following=following).followed == followed


def test_the_line_caps_decided_at_the_total() -> None:
    # A broker's re-delivery is one more duplicate: the line never reads 11/10.
    line = _figures(decided=11).line()
    assert "decided 10/10" in line
    assert line.startswith("published 10/10 · accepted 9 · ")
    assert line.endswith("called 2 · calls followed 1/2")


NEWEST_FIRST = [
    {"idempotencyKey": None, "outcome": "rejected", "reason": "invalid_json"},
    {"idempotencyKey": "k-dup", "outcome": "suppressed", "reason": "duplicate"},
    {"idempotencyKey": "k-3", "sensorId": "S-3", "outcome": "deferred", "reason": "no_contact"},
    {"idempotencyKey": "k-2", "sensorId": "S-2", "outcome": "called", "reason": None},
    {"idempotencyKey": "k-1", "sensorId": "S-1", "outcome": "called", "reason": None},
]


@pytest.mark.parametrize(
    ("recent", "key"),
    [
        pytest.param(NEWEST_FIRST, "k-2", id="the-newest-call"),
        pytest.param(NEWEST_FIRST[:3], "k-3", id="no-call-the-newest-accepted"),
        # A duplicate's decision has no record of its own to show; a rejection has no key.
        pytest.param(NEWEST_FIRST[:2], None, id="only-duplicates-and-rejections"),
        pytest.param([], None, id="nothing"),
    ],
)
def test_pick_record(recent: list[dict[str, Any]], key: str | None) -> None:
    found = pick_record(recent)
    assert (found["idempotencyKey"] if found else None) == key


@pytest.mark.parametrize("key", ["evt-1-2", "a/b", "with space", "[bold]x", "ключ", "a?b#c", "%41"])
def test_record_url_is_one_path_segment_whatever_the_key(key: str) -> None:
    url = record_url("http://127.0.0.1:8080", key)
    segment = url.removeprefix("http://127.0.0.1:8080/v1/alerts/")
    assert "/" not in segment
    assert not set(segment) & set(" ?#[]")
    assert unquote(segment) == key


def test_summary_rows_in_the_outcomes_order() -> None:
    console, out = _console()
    console.print(summary(COUNTERS))
    rows = [line.split() for line in out.getvalue().splitlines()[2:]]
    assert rows == [
        ["called", "-", "2"],
        ["suppressed", "cooldown", "4"],
        ["suppressed", "duplicate", "1"],
        ["deferred", "do_not_call", "1"],
        ["rejected", "invalid_json", "1"],
    ]


@pytest.mark.parametrize(
    ("reach", "line"),
    [
        pytest.param({"results": {}, "reachRate": None}, "", id="no-call"),
        pytest.param(
            {"results": {"reached": 2, "not_reached": 1}, "reachRate": 0.667},
            "call results: reached 2, not reached 1, unknown 0 (reach rate 67%)",
            id="rate",
        ),
        pytest.param(
            {"results": {"pending": 1}, "reachRate": None},
            "call results: reached 0, not reached 0, unknown 0",
            id="only-pending",
        ),
    ],
)
def test_results_line(reach: dict[str, Any], line: str) -> None:
    assert results_line(reach) == line


def test_next_steps_name_the_record_and_the_log_file() -> None:
    steps = dict(
        next_steps(
            service="http://s",
            emulator="http://e",
            record={"idempotencyKey": "k/1", "outcome": "deferred", "reason": "no_contact"},
            log_file="logs/tripline.log",
        )
    )
    assert steps == {
        "dashboard": "http://s/",
        "status (JSON)": "http://s/status",
        "one record (deferred/no_contact)": "http://s/v1/alerts/k%2F1",
        "what the contact center got": "http://e/_emulator/requests",
        "the service's logs (JSON)": "logs/tripline.log",
    }


def test_next_steps_without_a_record_or_a_log_file() -> None:
    steps = [what for what, _ in next_steps(service="s", emulator="e", record=None, log_file=None)]
    assert steps == ["dashboard", "status (JSON)", "what the contact center got"]


def test_plain_lines_print_only_changes_and_the_last_figures() -> None:
    console, out = _console()
    shown = LinesView(console, every=0.0)
    shown.update(_figures(published=1))
    shown.update(_figures(published=1))  # unchanged: not printed again
    shown.update(_figures(published=2))
    shown.close(_figures(published=2))  # already the last line
    assert [line.split(" · ")[0] for line in out.getvalue().splitlines()] == [
        "published 1/10",
        "published 2/10",
    ]


def test_plain_lines_are_throttled_but_the_last_figures_always_show() -> None:
    console, out = _console()
    shown = LinesView(console, every=3600.0)
    shown.update(_figures(published=1))  # the first line shows at once
    shown.update(_figures(published=2))  # too soon
    shown.close(_figures(published=3))
    lines = out.getvalue().splitlines()
    assert [line.split(" · ")[0] for line in lines] == ["published 1/10", "published 3/10"]
    assert "\x1b" not in out.getvalue()  # no terminal: no escape codes
