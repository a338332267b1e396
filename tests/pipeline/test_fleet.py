"""Fleet incidents: the threshold and its hysteresis."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tripline.pipeline.fleet import FleetRules, IncidentChange, incident_change

RULES = FleetRules(sensors=100, window_seconds=60.0, clear_ratio=0.5)


@pytest.mark.parametrize(
    ("active", "count", "expected"),
    [
        pytest.param(False, 100, IncidentChange.NONE, id="at-the-threshold-is-not-more-than"),
        pytest.param(False, 101, IncidentChange.STARTED, id="more-than-n-starts"),
        pytest.param(True, 101, IncidentChange.NONE, id="still-on"),
        pytest.param(True, 51, IncidentChange.NONE, id="dead-band-keeps-it-open"),
        pytest.param(True, 50, IncidentChange.ENDED, id="half-ends-it"),
        pytest.param(False, 0, IncidentChange.NONE, id="quiet"),
        pytest.param(True, 0, IncidentChange.ENDED, id="all-quiet-ends-it"),
    ],
)
def test_incident_change(active: bool, count: int, expected: IncidentChange) -> None:
    assert incident_change(active, count, RULES) == expected


@given(st.lists(st.integers(min_value=0, max_value=300), max_size=100))
def test_an_incident_never_starts_twice_or_ends_when_none_is_open(counts: list[int]) -> None:
    active = False
    for count in counts:
        change = incident_change(active, count, RULES)
        if change == IncidentChange.STARTED:
            assert not active
            active = True
        elif change == IncidentChange.ENDED:
            assert active
            active = False
        else:
            assert (count > RULES.sensors) <= active
            assert active <= (count > RULES.sensors * RULES.clear_ratio)
