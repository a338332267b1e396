"""Governing: occupancy admission with a critical bypass, aging, staleness, budget pace."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tripline.messages import Priority
from tripline.pipeline.govern import (
    Admission,
    GovernRules,
    Occupancy,
    Pace,
    admit,
    is_stale,
    prepay,
    rank,
)

RULES = GovernRules(
    threshold=0.8,
    saturation=0.95,
    max_observation_age=30,
    aging_seconds=100,
    max_age={Priority.LOW: 600},
)
NOW = 1000.0


def occ(value: float, *, ok: bool = True, age: float = 0, governed: bool = True) -> Occupancy:
    return Occupancy(value, 0, NOW - age, ok=ok, governed=governed)


@pytest.mark.parametrize(
    ("priority", "occupancy", "expected"),
    [
        pytest.param(Priority.NORMAL, occ(0.5), Admission.DIAL, id="calm-queue-dials"),
        pytest.param(Priority.NORMAL, occ(0.85), Admission.HOLD, id="busy-holds-normal"),
        pytest.param(Priority.LOW, occ(0.85), Admission.HOLD, id="busy-holds-low"),
        pytest.param(Priority.HIGH, occ(0.85), Admission.DIAL, id="busy-lets-high-through"),
        pytest.param(Priority.HIGH, occ(0.96), Admission.HOLD, id="saturated-holds-high"),
        pytest.param(Priority.LOW, occ(0.96), Admission.SATURATED, id="saturated-low-to-task"),
        pytest.param(Priority.CRITICAL, occ(1.0), Admission.DIAL, id="critical-always-dials"),
        pytest.param(Priority.CRITICAL, None, Admission.DIAL, id="critical-dials-unobserved"),
        pytest.param(Priority.NORMAL, None, Admission.HOLD, id="unknown-counts-as-busy"),
        pytest.param(
            Priority.NORMAL, occ(0.1, ok=False), Admission.HOLD, id="failed-poll-counts-as-busy"
        ),
        pytest.param(
            Priority.NORMAL, occ(0.1, age=31), Admission.HOLD, id="old-observation-counts-as-busy"
        ),
        pytest.param(
            Priority.LOW,
            occ(1.0, governed=False),
            Admission.DIAL,
            id="ungoverned-backend-holds-nothing",
        ),
    ],
)
def test_admit(priority: Priority, occupancy: Occupancy | None, expected: Admission) -> None:
    assert admit(priority, occupancy, now=NOW, rules=RULES) == expected


def test_aging_lifts_waiting_work() -> None:
    assert rank(Priority.LOW, 0, RULES) > rank(Priority.NORMAL, 0, RULES)
    assert rank(Priority.LOW, 150, RULES) < rank(Priority.NORMAL, 0, RULES)


def test_staleness_per_priority() -> None:
    assert is_stale(Priority.LOW, 601, RULES)
    assert not is_stale(Priority.LOW, 599, RULES)
    assert not is_stale(Priority.NORMAL, 10**6, RULES)  # no limit configured


@pytest.mark.parametrize(
    ("queued", "free", "recent", "expected"),
    [
        (0, 80, 0, 0),  # nothing queued, nothing started lately: take nothing
        (5, 80, 0, 5),  # what is queued, when slots are free
        (500, 3, 0, 3),  # no more than can start now at a slow pace
        (500, 3, 1, 3),  # a real contact center's pace: still only what can start
        (2, 1, 120, 32),  # under load: the pace, capped at `most`
        (2, 1, 20, 20),  # the pace, when more than what can start now
        (100, 80, 10, 32),  # never more than `most`
    ],
)
def test_prepay_takes_what_can_start_or_the_recent_pace(
    queued: int, free: int, recent: int, expected: int
) -> None:
    assert prepay(queued=queued, free=free, recent=recent, most=32) == expected


@pytest.mark.parametrize(
    ("starts", "asked_at", "expected"),
    [
        ([], 10.0, 0),
        ([10.01, 10.02, 10.03], 10.05, 3),  # this bucket
        ([10.01, 10.02, 10.03], 10.15, 3),  # the bucket before still counts
        ([10.01, 10.02, 10.03, 10.12], 10.15, 3),  # the busier of the two
        ([10.01, 10.02, 10.03], 10.25, 0),  # two buckets of silence: no pace
        ([10.01, 10.02, 10.03], 99.0, 0),  # long silence
    ],
)
def test_pace_counts_about_one_bucket_of_dispatches(
    starts: list[float], asked_at: float, expected: int
) -> None:
    pace = Pace(0.1)
    for at in starts:
        pace.started(at)
    assert pace.recent(asked_at) == expected


@given(st.lists(st.floats(min_value=0, max_value=1000), max_size=200))
def test_pace_never_exceeds_the_starts_it_saw(starts: list[float]) -> None:
    pace = Pace(0.1)
    for at in sorted(starts):
        pace.started(at)
    assert 0 <= pace.recent(max(starts, default=0.0)) <= len(starts)


# --- boundaries and the answers' edge cases (fixed expected values) ---------------------------


@pytest.mark.parametrize(
    ("priority", "occupancy", "expected"),
    [
        pytest.param(Priority.NORMAL, occ(0.79), Admission.DIAL, id="just-below-threshold"),
        pytest.param(Priority.NORMAL, occ(0.80), Admission.HOLD, id="at-threshold-holds"),
        pytest.param(Priority.HIGH, occ(0.80), Admission.DIAL, id="at-threshold-high-dials"),
        pytest.param(Priority.HIGH, occ(0.94), Admission.DIAL, id="below-saturation-high"),
        pytest.param(Priority.HIGH, occ(0.95), Admission.HOLD, id="at-saturation-high-holds"),
        pytest.param(Priority.LOW, occ(0.94), Admission.HOLD, id="below-saturation-low-holds"),
        pytest.param(Priority.LOW, occ(0.95), Admission.SATURATED, id="at-saturation-low-task"),
        pytest.param(Priority.NORMAL, occ(0.95), Admission.HOLD, id="at-saturation-normal"),
        pytest.param(Priority.LOW, occ(0.1, age=30), Admission.DIAL, id="30s-old-is-fresh"),
        pytest.param(Priority.LOW, occ(0.1, age=30.5), Admission.HOLD, id="30.5s-old-is-stale"),
        pytest.param(
            Priority.NORMAL,
            occ(1.0, ok=False, governed=False),
            Admission.DIAL,
            id="ungoverned-even-when-failed",
        ),
    ],
)
def test_admit_boundaries(priority: Priority, occupancy: Occupancy, expected: Admission) -> None:
    assert admit(priority, occupancy, now=NOW, rules=RULES) == expected


@pytest.mark.parametrize(
    ("priority", "waited", "expected"),
    [
        (Priority.CRITICAL, 0, 0.0),
        (Priority.NORMAL, 0, 2.0),
        (Priority.LOW, 1, 2.99),  # aging_seconds 100: a second lifts it a hundredth
        (Priority.LOW, 50, 2.5),
        (Priority.LOW, 100, 2.0),  # one aging period: one level
        (Priority.LOW, 300, 0.0),  # three: level with a fresh critical
    ],
)
def test_rank_lifts_a_level_per_aging_period(
    priority: Priority, waited: float, expected: float
) -> None:
    assert rank(priority, waited, RULES) == pytest.approx(expected)


def test_low_work_that_waited_a_second_does_not_outrank_a_fresh_critical_call() -> None:
    assert rank(Priority.LOW, 1, RULES) > rank(Priority.CRITICAL, 0, RULES)


def test_staleness_is_past_the_limit() -> None:
    assert not is_stale(Priority.LOW, 600, RULES)  # at the limit: not yet
    assert is_stale(Priority.LOW, 600.5, RULES)
