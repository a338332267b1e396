"""A circuit breaker as data: closed, open after repeated failures, half-open to probe."""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum


class BreakerState(StrEnum):
    """Where the breaker stands."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class Breaker:
    """Failures in a row and, when open, since when."""

    state: BreakerState = BreakerState.CLOSED
    failures: int = 0
    opened_at: float = 0.0


def allow(breaker: Breaker, *, now: float, cool_off: float) -> tuple[Breaker, bool]:
    """May a request go out now? An open breaker lets one probe through after `cool_off`."""
    if breaker.state == BreakerState.OPEN and now - breaker.opened_at >= cool_off:
        return replace(breaker, state=BreakerState.HALF_OPEN), True
    return breaker, breaker.state != BreakerState.OPEN


def record(breaker: Breaker, *, ok: bool, now: float, threshold: int) -> Breaker:
    """Account for one request's result: `threshold` failures in a row open the breaker."""
    if ok:
        return Breaker()
    failures = breaker.failures + 1
    if breaker.state == BreakerState.HALF_OPEN or failures >= threshold:
        return Breaker(BreakerState.OPEN, failures, now)
    return replace(breaker, failures=failures)
