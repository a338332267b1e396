"""Governing: occupancy admission with a critical bypass, aging, staleness, parsing answers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from messages import Priority
from pipeline.govern import (
    Admission,
    GovernRules,
    Occupancy,
    Pace,
    admit,
    is_stale,
    prepay,
    rank,
    read_cxone_activity,
    read_genesys_observations,
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


def test_read_genesys_observations() -> None:
    body = {
        "results": [
            {
                "group": {"queueId": "q"},
                "data": [
                    {"metric": "oOnQueueUsers", "qualifier": "IDLE", "stats": {"count": 2}},
                    {"metric": "oOnQueueUsers", "qualifier": "INTERACTING", "stats": {"count": 6}},
                ],
            },
            {
                "group": {"queueId": "q", "mediaType": "voice"},
                "data": [{"metric": "oWaiting", "stats": {"count": 3}}],
            },
        ]
    }
    result = read_genesys_observations(body, NOW)
    assert (result.occupancy, result.waiting, result.ok) == (0.75, 3, True)
    assert read_genesys_observations({"results": []}, NOW).occupancy == 1.0  # nobody on queue
    assert not read_genesys_observations({"nope": 1}, NOW).ok
    bad = {"results": [{"data": [{"metric": "oWaiting", "stats": {"count": -1}}]}]}
    assert not read_genesys_observations(bad, NOW).ok


def test_read_cxone_activity() -> None:
    body = {"skillActivity": [{"agentsLoggedIn": 10, "agentsAvailable": 1, "queueCount": 4}]}
    result = read_cxone_activity(body, NOW)
    assert (result.occupancy, result.waiting, result.ok) == (0.9, 4, True)
    assert not read_cxone_activity({"skillActivity": []}, NOW).ok
    assert not read_cxone_activity({"skillActivity": [{"agentsLoggedIn": "x"}]}, NOW).ok


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


def _genesys(*groups: list[object]) -> dict[str, object]:
    return {"results": [{"group": {"queueId": f"q{i}"}, "data": d} for i, d in enumerate(groups)]}


def _users(qualifier: str, count: object) -> dict[str, object]:
    return {"metric": "oOnQueueUsers", "qualifier": qualifier, "stats": {"count": count}}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            _genesys(
                [_users("IDLE", 1), _users("INTERACTING", 3)],
                [_users("IDLE", 3), _users("INTERACTING", 1)],
            ),
            Occupancy(0.5, 0, NOW),
            id="several-queues-summed",
        ),
        pytest.param(
            _genesys([_users("IDLE", 0), _users("INTERACTING", 4)]),
            Occupancy(1.0, 0, NOW),
            id="zero-idle-is-a-count",
        ),
        pytest.param(
            _genesys([_users("IDLE", 2), {"metric": "oWaiting", "stats": {"count": 0}}]),
            Occupancy(0.0, 0, NOW),
            id="a-quiet-queue-is-an-answer",
        ),
        pytest.param(
            _genesys([_users("IDLE", 2), {"metric": "oWaiting", "stats": {}}]),
            Occupancy(0.0, 0, NOW),
            id="no-count-is-zero",
        ),
        pytest.param(
            _genesys([_users("IDLE", 2), "odd", {"metric": "oWaiting"}]),
            Occupancy(0.0, 0, NOW),
            id="an-odd-item-is-skipped",
        ),
        pytest.param(
            _genesys(
                [{"metric": "oWaiting", "stats": {"count": 2}}],
                [{"metric": "oWaiting", "stats": {"count": 5}}],
            ),
            Occupancy(1.0, 7, NOW),
            id="waiting-summed-nobody-on-queue",
        ),
        pytest.param(
            {"results": [{"group": {}, "data": "x"}]},
            Occupancy(1.0, 0, NOW, ok=False, detail="malformed observation group"),
            id="malformed-group",
        ),
        pytest.param(
            {"results": ["x"]},
            Occupancy(1.0, 0, NOW, ok=False, detail="malformed observation group"),
            id="a-group-that-is-not-an-object",
        ),
        pytest.param(
            _genesys([_users("IDLE", 1.5)]),
            Occupancy(1.0, 0, NOW, ok=False, detail="bad observation count"),
            id="a-fractional-count",
        ),
        pytest.param(
            {"results": "x"},
            Occupancy(1.0, 0, NOW, ok=False, detail="observations without results"),
            id="results-not-a-list",
        ),
        pytest.param(
            [],
            Occupancy(1.0, 0, NOW, ok=False, detail="observations without results"),
            id="not-an-object",
        ),
    ],
)
def test_read_genesys_observations_table(body: object, expected: Occupancy) -> None:
    result = read_genesys_observations(body, NOW)
    assert result == expected
    assert result.governed is True  # Genesys reports occupancy: a failed poll is still governed


def _cxone(logged_in: object, available: object, queued: object) -> dict[str, object]:
    row = {"agentsLoggedIn": logged_in, "agentsAvailable": available, "queueCount": queued}
    return {"skillActivity": [row]}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(_cxone(10, 1, 4), Occupancy(0.9, 4, NOW), id="busy"),
        pytest.param(_cxone(4, 4, 0), Occupancy(0.0, 0, NOW), id="all-available-quiet"),
        pytest.param(_cxone(0, 0, 3), Occupancy(1.0, 3, NOW), id="nobody-logged-in"),
        pytest.param(_cxone(2, 5, 0), Occupancy(0.0, 0, NOW), id="more-available-than-in"),
        pytest.param(
            _cxone(2, -1, 0),
            Occupancy(1.0, 0, NOW, ok=False, detail="bad skill activity counts"),
            id="a-negative-count",
        ),
        pytest.param(
            _cxone(2, 1, None),
            Occupancy(1.0, 0, NOW, ok=False, detail="bad skill activity counts"),
            id="a-missing-count",
        ),
        pytest.param(
            {"skillActivity": ["x"]},
            Occupancy(1.0, 0, NOW, ok=False, detail="skill activity without rows"),
            id="a-row-that-is-not-an-object",
        ),
        pytest.param(
            [],
            Occupancy(1.0, 0, NOW, ok=False, detail="skill activity without rows"),
            id="not-an-object",
        ),
    ],
)
def test_read_cxone_activity_table(body: object, expected: Occupancy) -> None:
    result = read_cxone_activity(body, NOW)
    assert result == expected
    assert result.governed is True  # CXone reports occupancy: a failed poll is still governed
