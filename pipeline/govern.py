"""Governing the dialer: occupancy admission, aging, staleness, and the budget taken ahead."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from tripline.messages import Priority


@dataclass(frozen=True, slots=True)
class Occupancy:
    """The contact center's load as last observed."""

    occupancy: float
    """Share of on-queue agents busy, 0..1 (no agent on queue counts as 1: no capacity)."""
    waiting: int
    """Voice interactions waiting in queue."""
    observed_at: float
    """When, epoch seconds."""
    ok: bool = True
    """False when the last poll failed: non-critical work is then treated as busy."""
    governed: bool = True
    """False when the backend cannot report occupancy: nothing is held on its account."""
    detail: str = ""


class Admission(StrEnum):
    """What the dialer does with the head of one priority's queue now."""

    DIAL = "dial"
    HOLD = "hold"
    SATURATED = "saturated"  # low work becomes a task: deferred/queue_saturated


@dataclass(frozen=True, slots=True, kw_only=True)
class GovernRules:
    """The [dialer] knobs admission, aging and staleness read."""

    threshold: float = 0.8
    saturation: float = 0.95
    max_observation_age: float = 30.0
    """An observation older than this counts as a failed poll."""
    aging_seconds: float = 300.0
    """Waiting this long lifts work one priority level when choosing what goes next."""
    max_age: dict[Priority, float] = field(default_factory=dict)
    """Work older than this becomes a task (deferred/stale); absent: never."""
    max_alert_age: dict[Priority, float] = field(default_factory=dict)
    """An alert older than this by its sensor's clock rings nobody (deferred/stale); absent:
    never. Met at the head of its queue it leaves without taking rate budget."""


def admit(
    priority: Priority, occupancy: Occupancy | None, *, now: float, rules: GovernRules
) -> Admission:
    """Decide whether work of `priority` may dial now, given the queue's occupancy.

    Critical work is never held (it has its own concurrency cap instead). An unknown or failed
    observation holds everything else: when we cannot see the queue, we assume it is busy.
    """
    if priority == Priority.CRITICAL:
        return Admission.DIAL
    if occupancy is not None and not occupancy.governed:
        return Admission.DIAL
    if (
        occupancy is None
        or not occupancy.ok
        or now - occupancy.observed_at > (rules.max_observation_age)
    ):
        return Admission.HOLD
    if occupancy.occupancy >= rules.saturation:
        return Admission.SATURATED if priority == Priority.LOW else Admission.HOLD
    if occupancy.occupancy >= rules.threshold and priority >= Priority.NORMAL:
        return Admission.HOLD
    return Admission.DIAL


def rank(priority: Priority, waited: float, rules: GovernRules) -> float:
    """Order of service: lower first; waiting `aging_seconds` lifts work one level."""
    return priority - waited / rules.aging_seconds


def is_stale(priority: Priority, waited: float, rules: GovernRules) -> bool:
    """Whether work waited past its priority's maximum age."""
    limit = rules.max_age.get(priority)
    return limit is not None and waited > limit


def prepay(*, queued: int, free: int, recent: int, most: int) -> int:
    """How much rate budget to take in one round trip.

    What can start now (queued work, up to the free slots), or the recent pace (dispatches
    during the prepaid budget's lifetime) when that is more: under load, work arrives and
    slots free up a few at a time, and budgeting only those would cost a round trip per call or
    two.
    Never more than `most`. At a real contact center's pace (a few calls a second) `recent` is
    0 or 1, so nothing is taken beyond what can start, and no budget lapses unused.
    """
    return max(0, min(most, max(min(queued, free), recent)))


class Pace:
    """Counts dispatches per bucket of `seconds`; `recent` is about one bucket's worth."""

    __slots__ = ("_bucket", "_current", "_previous", "_seconds")

    def __init__(self, seconds: float) -> None:
        """Buckets of `seconds` each."""
        self._seconds = seconds
        self._bucket, self._current, self._previous = 0, 0, 0

    def _roll(self, now: float) -> None:
        bucket = int(now / self._seconds)
        if bucket != self._bucket:
            self._previous = self._current if bucket == self._bucket + 1 else 0
            self._bucket, self._current = bucket, 0

    def started(self, now: float) -> None:
        """Count one dispatch at `now`."""
        self._roll(now)
        self._current += 1

    def recent(self, now: float) -> int:
        """Dispatches in the current bucket or the one before, whichever had more."""
        self._roll(now)
        return max(self._current, self._previous)
