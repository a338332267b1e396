"""Occupancy as each contact center reports it: the answers read, and their edge cases.

A malformed answer is a failed poll (ok=False: non-critical work waits), never an exception.
"""

from __future__ import annotations

import pytest

from tripline.adapters.backends.cxone import read_cxone_activity
from tripline.adapters.backends.genesys import read_genesys_observations
from tripline.pipeline.govern import Occupancy

NOW = 1000.0


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
