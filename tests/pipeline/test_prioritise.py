"""Priorities from alert type, raised but never lowered by severity."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tripline.messages import Priority
from tripline.pipeline.prioritise import PriorityRules, critical_first, prioritise

RULES = PriorityRules.from_config(
    "normal",
    {"temp_critical": "critical", "battery_low": "low"},
    {"critical": "critical", "info": "low"},
)


@pytest.mark.parametrize(
    ("alert_type", "severity", "expected"),
    [
        pytest.param("temp_critical", "", Priority.CRITICAL, id="mapped-type"),
        pytest.param("unknown", "", Priority.NORMAL, id="unmapped-type-default"),
        pytest.param("battery_low", "critical", Priority.CRITICAL, id="severity-escalates"),
        pytest.param("temp_critical", "info", Priority.CRITICAL, id="severity-never-demotes"),
        pytest.param("unknown", "CRITICAL", Priority.CRITICAL, id="severity-case-insensitive"),
        pytest.param("unknown", "whatever", Priority.NORMAL, id="unknown-severity-ignored"),
    ],
)
def test_prioritise(alert_type: str, severity: str, expected: Priority) -> None:
    assert prioritise(alert_type, severity, RULES) == expected


# (sensor, urgent) items, by index: which go ahead, which stay behind.
CRITICAL_FIRST = [
    ([], [], []),
    ([("a", False), ("b", True)], [1], [0]),  # another sensor's critical alert goes ahead
    ([("a", True), ("a", False)], [0], [1]),  # already first
    ([("a", False), ("a", True)], [], [0, 1]),  # never ahead of its own sensor's earlier alert
    ([("a", False), ("a", True), ("b", True)], [2], [0, 1]),
    ([("a", True), ("b", False), ("a", True)], [0, 2], [1]),
    ([(None, False), (None, True)], [1], [0]),  # no sensor: nothing to keep order with
]


@pytest.mark.parametrize(("items", "ahead", "behind"), CRITICAL_FIRST)
def test_critical_first(
    items: list[tuple[str | None, bool]], ahead: list[int], behind: list[int]
) -> None:
    indexed = list(enumerate(items))
    got = critical_first(indexed, lambda i: i[1][1], lambda i: i[1][0])
    assert ([n for n, _ in got[0]], [n for n, _ in got[1]]) == (ahead, behind)


@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c", None]), st.booleans()), max_size=30))
def test_critical_first_keeps_every_item_and_each_sensors_order(
    items: list[tuple[str | None, bool]],
) -> None:
    indexed = list(enumerate(items))
    ahead, behind = critical_first(indexed, lambda i: i[1][1], lambda i: i[1][0])
    order = ahead + behind
    assert sorted(n for n, _ in order) == list(range(len(items)))
    assert all(urgent for _, (_, urgent) in ahead)
    for part in (ahead, behind):
        assert [n for n, _ in part] == sorted(n for n, _ in part)
    for name in ("a", "b", "c"):
        mine = [n for n, (s, _) in order if s == name]
        assert mine == sorted(mine)
    # Nothing urgent stays behind without an earlier alert of its sensor behind it too.
    for n, (sensor, urgent) in behind:
        if urgent:
            assert sensor is not None
            assert any(m < n and s == sensor for m, (s, _) in behind)
