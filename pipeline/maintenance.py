"""Maintenance windows: a sensor (or a customer's site) being serviced places no calls.

Nagios and Icinga call it scheduled downtime, Zabbix maintenance, Alertmanager a silence: an
operator says "sensor X is being worked on until 16:00", and its alerts are recorded as
suppressed/maintenance instead of ringing the customer about what a technician is doing.

A window matches by sensorId and/or customerId (one of them at least: the whole fleet is
paused with POST /v1/admin/dialing/pause instead), optionally narrowed to one alertType. It
covers an alert that was raised inside it or that is decided while it is open: a backlog
replayed after the window closed does not call about what happened during the work.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from tripline.messages import Alert, Reason
from tripline.pipeline.validate import ID_PATTERN, TYPE_PATTERN, FieldChecker, Problem

MAX_SECONDS = 30 * 24 * 3600
"""The longest window: a longer one is a decommissioned sensor, which the CRM should say."""
RETENTION_SECONDS = 24 * 3600
"""How long an ended window is still listed (who silenced what, and why)."""
_TEXT_MAX = 500
_NAME = re.compile(r"^[^\x00-\x1f]+$")


class WindowState(StrEnum):
    """Where a window stands at a given moment."""

    PENDING = "pending"
    ACTIVE = "active"
    ENDED = "ended"


@dataclass(frozen=True, slots=True, kw_only=True)
class Window:
    """One maintenance window."""

    window_id: str
    sensor_id: str = ""
    """'' matches every sensor (of the customer)."""
    customer_id: str = ""
    """'' matches every customer (of the sensor)."""
    alert_type: str = ""
    """'' matches every alert type."""
    starts_at: float
    ends_at: float
    comment: str
    created_by: str
    created_at: float

    def matches(self, alert: Alert) -> bool:
        """Whether the alert is one of those the window is about (at any time)."""
        return (
            (not self.sensor_id or self.sensor_id == alert.sensor_id)
            and (not self.customer_id or self.customer_id == alert.customer_id)
            and (not self.alert_type or self.alert_type == alert.alert_type)
        )

    def is_open(self, at: float) -> bool:
        """Whether `at` falls inside the window (start included, end excluded)."""
        return self.starts_at <= at < self.ends_at

    def covers(self, alert: Alert, now: float) -> bool:
        """Raised inside the window, or decided while it is open."""
        return self.matches(alert) and (self.is_open(alert.timestamp) or self.is_open(now))

    def state(self, now: float) -> WindowState:
        """Pending, active or ended at `now`."""
        if now < self.starts_at:
            return WindowState.PENDING
        return WindowState.ACTIVE if now < self.ends_at else WindowState.ENDED

    def detail(self) -> str:
        """What a suppressed alert's record says about it."""
        return f"maintenance {self.window_id} by {self.created_by}: {self.comment}"[:300]

    def to_doc(self, now: float | None = None) -> dict[str, Any]:
        """The JSON document (API, storage); with `now`, its state at that moment too."""
        doc: dict[str, Any] = {
            "id": self.window_id,
            "sensorId": self.sensor_id or None,
            "customerId": self.customer_id or None,
            "alertType": self.alert_type or None,
            "startsAt": _iso(self.starts_at),
            "endsAt": _iso(self.ends_at),
            "comment": self.comment,
            "createdBy": self.created_by,
            "createdAt": _iso(self.created_at),
        }
        if now is not None:
            doc["state"] = self.state(now).value
        return doc


def covering(windows: tuple[Window, ...], alert: Alert, now: float) -> Window | None:
    """The first window that covers the alert, if any."""
    for window in windows:
        if window.covers(alert, now):
            return window
    return None


def parse_request(
    doc: Any,  # noqa: ANN401 - a decoded JSON body, whatever its shape
    *,
    window_id: str,
    now: float,
) -> Window | list[Problem]:
    """Check an operator's request for a window; the window, or one problem per bad field.

    Body: `sensorId` and/or `customerId`, optional `alertType`, optional `startsAt` (default
    now), and either `endsAt` or `durationSeconds`; `comment` (why) and `createdBy` (who)
    are required, as Alertmanager requires them of a silence: a window nobody can explain is
    one nobody dares to end.
    """
    if not isinstance(doc, dict):
        return [Problem("", Reason.INVALID_JSON, "the body must be a JSON object")]
    problems: list[Problem] = []
    check = FieldChecker(doc, problems, 128)
    sensor = check.optional_string("sensorId", ID_PATTERN, 128)
    customer = check.optional_string("customerId", ID_PATTERN, 128)
    alert_type = check.optional_string("alertType", TYPE_PATTERN, 64)
    if doc.get("sensorId") is None and doc.get("customerId") is None:
        problems.append(
            Problem(
                "sensorId",
                Reason.MISSING_FIELD,
                "sensorId or customerId is required (to hold every call, pause dialing)",
            )
        )
    comment = check.string("comment", _NAME, _TEXT_MAX)
    by = check.string("createdBy", _NAME, 128)
    starts = check.timestamp("startsAt", math.inf) if "startsAt" in doc else now
    ends = _end(doc, check, problems, starts)
    unknown = sorted(set(doc) - _FIELDS)
    problems.extend(Problem(name, Reason.INVALID_FIELD, "unknown field") for name in unknown)
    if problems:
        return problems
    if ends <= now:
        return [Problem(_end_field(doc), Reason.INVALID_FIELD, "the window has ended already")]
    if ends - starts > MAX_SECONDS:
        days = MAX_SECONDS // 86400
        return [Problem(_end_field(doc), Reason.INVALID_FIELD, f"longer than {days} days")]
    return Window(
        window_id=window_id,
        sensor_id=sensor,
        customer_id=customer,
        alert_type=alert_type,
        starts_at=starts,
        ends_at=ends,
        comment=comment,
        created_by=by,
        created_at=now,
    )


_FIELDS = {
    "sensorId",
    "customerId",
    "alertType",
    "startsAt",
    "endsAt",
    "durationSeconds",
    "comment",
    "createdBy",
}


def _end(doc: dict[str, Any], check: FieldChecker, problems: list[Problem], starts: float) -> float:
    if ("endsAt" in doc) == ("durationSeconds" in doc):
        problems.append(
            Problem("endsAt", Reason.MISSING_FIELD, "give exactly one of endsAt, durationSeconds")
        )
        return 0.0
    if "endsAt" in doc:
        ends = check.timestamp("endsAt", math.inf)
    else:
        duration = check.number("durationSeconds")
        if duration <= 0:  # NaN (already a problem) compares false too
            problems.append(Problem("durationSeconds", Reason.INVALID_FIELD, "must be positive"))
        ends = starts + duration
    if not problems and ends <= starts:
        problems.append(Problem("endsAt", Reason.INVALID_FIELD, "must be after startsAt"))
    return ends


def _end_field(doc: dict[str, Any]) -> str:
    return "endsAt" if "endsAt" in doc else "durationSeconds"


def from_doc(doc: Any) -> Window | None:  # noqa: ANN401
    """A stored window; None for anything that is not one (it is then ignored, not fatal)."""
    if not isinstance(doc, dict):
        return None
    try:
        return Window(
            window_id=str(doc["id"]),
            sensor_id=str(doc.get("sensorId") or ""),
            customer_id=str(doc.get("customerId") or ""),
            alert_type=str(doc.get("alertType") or ""),
            starts_at=datetime.fromisoformat(doc["startsAt"]).timestamp(),
            ends_at=datetime.fromisoformat(doc["endsAt"]).timestamp(),
            comment=str(doc["comment"]),
            created_by=str(doc["createdBy"]),
            created_at=datetime.fromisoformat(doc["createdAt"]).timestamp(),
        )
    except (KeyError, TypeError, ValueError):
        return None


def _iso(epoch: float) -> str:
    return (
        datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )
