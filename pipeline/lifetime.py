"""How long an alert's record must live: until its obligations are over, then the record TTL.

A record (the idempotency claim), its history, its context, its grouped alerts and its sensor's
readings are kept at least until its task is due and its re-attempts have ended, and
`[redis] record_ttl_seconds` past that: a Friday-evening deferral due Monday 09:00 is still
readable on Monday, and a re-delivery of its key on Monday is still a duplicate.
"""

from __future__ import annotations

import math


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
