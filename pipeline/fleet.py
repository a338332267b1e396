"""Fleet incidents: when many distinct sensors alert at once, it is one incident, not N calls.

The count of distinct sensors that fired inside the window is kept in Redis (shared by every
shard and every instance); this module only decides, with hysteresis so an incident hovering at
the threshold does not open and close with every batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True, slots=True)
class FleetRules:
    """More than `sensors` distinct sensors firing inside `window_seconds` is an incident."""

    sensors: int = 1000
    window_seconds: float = 60.0
    clear_ratio: float = 0.5
    """The incident ends when the count falls to sensors x clear_ratio or below."""


class IncidentChange(StrEnum):
    """What one count changed."""

    NONE = "none"
    STARTED = "fleet_incident_started"
    ENDED = "fleet_incident_ended"


def incident_change(active: bool, count: int, rules: FleetRules) -> IncidentChange:
    """Whether `count` distinct firing sensors in the window open or close an incident."""
    if not active and count > rules.sensors:
        return IncidentChange.STARTED
    if active and count <= rules.sensors * rules.clear_ratio:
        return IncidentChange.ENDED
    return IncidentChange.NONE
