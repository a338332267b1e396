"""Per-sensor suppression: the cooldown window between calls, and resolved alerts."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from tripline.messages import Alert, Reason
from tripline.pipeline.flap import FlapState

SNAPSHOT_VERSION = 2
_READABLE = {1, 2}  # version 1 had no flap history: it starts empty


@dataclass(frozen=True, slots=True)
class SensorState:
    """What a sensor entity remembers between alerts (snapshotted to Redis)."""

    cooldown_until: float = 0.0
    """No new call before this time (epoch seconds): a call or task was raised for an episode."""
    firing: bool = False
    """Whether the last alert said firing."""
    last_alert_at: float = 0.0
    """When the last alert of this sensor was handled."""
    flap: FlapState = FlapState()
    """The flap detector's history: it must survive restarts and passivation."""
    window_key: str = ""
    """The alert whose episode holds the window: its own replay is not suppressed by it."""

    def to_snapshot(self) -> dict[str, Any]:
        """The versioned snapshot document."""
        flap = self.flap
        return {
            "version": SNAPSHOT_VERSION,
            "cooldownUntil": self.cooldown_until,
            "firing": self.firing,
            "lastAlertAt": self.last_alert_at,
            "windowKey": self.window_key,
            "flap": {
                "samples": "".join("1" if s else "0" for s in flap.samples),
                "lastSampleAt": flap.last_sample_at,
                "flapping": flap.flapping,
                "since": flap.since,
                "percent": flap.percent,
            },
        }

    @classmethod
    def from_snapshot(cls, doc: Any) -> SensorState:  # noqa: ANN401
        """Restore a snapshot; an unknown version or shape starts clean (Redis still decides)."""
        if not isinstance(doc, dict) or doc.get("version") not in _READABLE:
            return cls()
        try:
            flap = FlapState()
            if isinstance(raw := doc.get("flap"), dict):
                flap = FlapState(
                    samples=_samples(str(raw["samples"])),
                    last_sample_at=float(raw["lastSampleAt"]),
                    flapping=bool(raw["flapping"]),
                    since=float(raw["since"]),
                    percent=float(raw["percent"]),
                )
            return cls(
                float(doc["cooldownUntil"]),
                bool(doc["firing"]),
                float(doc["lastAlertAt"]),
                flap,
                str(doc.get("windowKey", "")),
            )
        except (KeyError, TypeError, ValueError):
            return cls()


@dataclass(frozen=True, slots=True)
class Proceed:
    """Nothing suppresses this alert: claim the cooldown window and go on."""


@dataclass(frozen=True, slots=True)
class Suppressed:
    """This alert causes no call."""

    reason: Reason
    until: float = 0.0
    """For cooldown: when the window ends."""
    detail: str = ""
    """What the record says about it, when the reason alone does not (a maintenance window)."""


def suppress(
    state: SensorState, alert: Alert, *, now: float, cooldown: float
) -> tuple[SensorState, Proceed | Suppressed]:
    """Decide whether an alert may open a call episode for its sensor.

    Args:
        state: the sensor's state before the alert.
        alert: the alert.
        now: the current time, epoch seconds.
        cooldown: the window between calls for one sensor, seconds.

    Returns:
        The new state and the decision. A Proceed is provisional: the caller claims the window
        atomically in Redis (it holds across restarts and instances) and may still suppress.
    """
    if not alert.firing:
        return replace(state, firing=False, last_alert_at=now), Suppressed(Reason.RESOLVED)
    state = replace(state, firing=True, last_alert_at=now)
    if now < state.cooldown_until:
        if alert.idempotency_key == state.window_key:
            # The same alert again (a resume sweep, a retried batch): the Redis claim is
            # re-entrant for it too, and its record decides whether it is still undecided.
            return state, Proceed()
        return state, Suppressed(Reason.COOLDOWN, state.cooldown_until)
    return replace(
        state, cooldown_until=now + cooldown, window_key=alert.idempotency_key
    ), Proceed()


def _samples(text: str) -> tuple[bool, ...]:
    if set(text) - {"0", "1"}:
        raise ValueError(text)
    return tuple(c == "1" for c in text)
