"""How long an alert's record must live: until its obligations are over, then the record TTL.

A record (the idempotency claim), its history, its context, its grouped alerts and its sensor's
readings are kept at least until its task is due and its re-attempts have ended, and
`[redis] record_ttl_seconds` past that: a Friday-evening deferral due Monday 09:00 is still
readable on Monday, and a re-delivery of its key on Monday is still a duplicate.
"""

from __future__ import annotations

import math

ACCEPT_SLACK = 600
"""Seconds a record is given past the record TTL when it is accepted (at most; see slack).

Most obligations come due within minutes of acceptance (a fleet incident's task, a stale or
failed call's: due now): covered by this, they need no extension of their own — five commands
per task that a storm of 50,000 tasks would otherwise pay (README "Nothing lost, nothing twice").
"""

_MARGIN = 60
"""Of the slack, what is left for the time between reading the clock at acceptance and Redis
setting the TTL, and for clocks of instances that disagree a little."""


def slack(ttl: int) -> int:
    """The slack acceptance gives a record of `ttl`: ACCEPT_SLACK, or a sixth of the TTL.

    The schema's least TTL (an hour) gets all of it; a test's TTL of seconds gets a sixth, so
    that no step relies on minutes the record was never given.
    """
    return min(ACCEPT_SLACK, ttl // 6)


def accept_ttl(ttl: int) -> int:
    """The TTL an accepted alert's record, history and context start with."""
    return ttl + slack(ttl)


def must_keep(*, accepted_at: float, until: float, ttl: int) -> bool:
    """Whether an obligation at `until` outlasts what acceptance gave the record.

    Args:
        accepted_at: when the alert was accepted (its record's TTL started then).
        until: the obligation: a task's due time, a ladder's next step.
        ttl: `[redis] record_ttl_seconds`.
    """
    return until - accepted_at > slack(ttl) - _MARGIN


def keep_seconds(*, now: float, until: float, ttl: int) -> int:
    """The TTL (seconds from `now`) that keeps a record `ttl` past `until`.

    Args:
        now: the current time, epoch seconds (a TTL is relative: Redis' own clock applies it,
            so another host's clock, or a test's, does not shift it).
        until: the record's last obligation: its task's due time, its ladder's next step.
        ttl: `[redis] record_ttl_seconds`.

    Returns:
        At least `ttl`, and at least `ttl` past `until` (rounded up to a whole second).
    """
    return max(ttl, math.ceil(until - now) + ttl)
