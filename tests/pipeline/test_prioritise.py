"""Priorities from alert type, raised but never lowered by severity."""

from __future__ import annotations

import pytest

from messages import Priority
from pipeline.prioritise import PriorityRules, prioritise

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
