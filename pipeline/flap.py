"""Flap detection: Nagios' weighted percent state change with hysteresis, for event-driven sensors.

Nagios keeps the last 21 states of a check (20 transitions), weights each transition linearly from
0.75 (oldest) to 1.25 (newest) and calls the sum x 100 / 20 the percent state change. Flapping
starts at or above the high threshold and stops at or below the low one; in between nothing
changes (the dead band). Nagios samples on every check; our sensors speak only when something
happens, so a sample is taken per alert (firing or resolved) and, like the Nagios host path's
`wait_threshold`, every full `sample_seconds` of silence counts as one more sample of the last
state: a sensor that settles quietly stops flapping instead of staying frozen mid-episode.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

HISTORY = 21
"""States kept per sensor, as Nagios' MAX_STATE_HISTORY_ENTRIES: 20 transitions."""

_LOW_WEIGHT, _HIGH_WEIGHT = 0.75, 1.25


@dataclass(frozen=True, slots=True)
class FlapRules:
    """Thresholds in percent (Nagios' compiled defaults) and the silent-sample period."""

    low: float = 20.0
    high: float = 30.0
    sample_seconds: float = 60.0


@dataclass(frozen=True, slots=True)
class FlapState:
    """A sensor's recent states (True = firing), oldest first, and whether it flaps."""

    samples: tuple[bool, ...] = ()
    last_sample_at: float = 0.0
    flapping: bool = False
    since: float = 0.0
    """When the current flap episode started (0 when not flapping)."""
    percent: float = 0.0
    """The percent state change at the last sample."""


class FlapChange(StrEnum):
    """What one observation changed."""

    NONE = "none"
    STARTED = "flapping_started"
    STOPPED = "flapping_stopped"


def percent_state_change(samples: tuple[bool, ...]) -> float:
    """Nagios' weighted percent state change over up to HISTORY samples, oldest first.

    A shorter history is padded with its oldest state: nothing before it changed.
    """
    if len(samples) < 2:
        return 0.0
    padded = (samples[0],) * (HISTORY - len(samples)) + samples[-HISTORY:]
    step = (_HIGH_WEIGHT - _LOW_WEIGHT) / (HISTORY - 2)
    total = sum(
        _LOW_WEIGHT + (x - 1) * step for x in range(1, HISTORY) if padded[x] != padded[x - 1]
    )
    return total * 100.0 / (HISTORY - 1)


def observe(
    state: FlapState, firing: bool | None, *, now: float, rules: FlapRules
) -> tuple[FlapState, FlapChange]:
    """Add the samples up to `now` (and the alert's state, unless `firing` is None: a clock tick).

    Args:
        state: the sensor's flap state before.
        firing: the alert's state; None when only time has passed (a periodic re-evaluation).
        now: the current time, epoch seconds.
        rules: thresholds and the silent-sample period.

    Returns:
        The new state and whether a flap episode started or stopped.
    """
    # A new sensor was quiet before its first alert: that first alert is a change.
    samples = state.samples or (False,)
    last_at = state.last_sample_at or now
    silent = int((now - last_at) // rules.sample_seconds) if now > last_at else 0
    if silent:
        samples += (samples[-1],) * min(silent, HISTORY)
        last_at += silent * rules.sample_seconds
    if firing is not None:
        samples += (firing,)
        last_at = now
    samples = samples[-HISTORY:]
    percent = percent_state_change(samples)
    new = replace(state, samples=samples, last_sample_at=last_at, percent=percent)
    if not state.flapping and percent >= rules.high:
        return replace(new, flapping=True, since=now), FlapChange.STARTED
    if state.flapping and percent <= rules.low:
        return replace(new, flapping=False, since=0.0), FlapChange.STOPPED
    return new, FlapChange.NONE
