"""Freshness at the moment of dialing: how old an alert may be, and how old a customer's flags.

Two rules the dialer's last checks apply (actors/dialing/gate.py), with `now` passed in:

* An alert older by its sensor's own timestamp than `[dialer] max_alert_age_seconds` for its
  priority rings nobody: a broker backlog replayed hours after an outage is news about the past.
  It becomes `deferred/stale`, a task a person looks at now.
* The do-not-call, do-not-disturb and consent flags a call is placed on are at most
  `[crm] max_profile_age_seconds` old: an older profile is read from the CRM again.
"""

from __future__ import annotations

from collections.abc import Mapping

from tripline.messages import Customer, Priority, Reason
from tripline.pipeline.comply import Blocked, ComplyRules, check_flags, comply


def alert_age(timestamp: float, *, now: float) -> float:
    """How old an alert is by its sensor's clock, in seconds.

    A sensor clock ahead of ours (validation admits `[validate] max_future_skew_seconds` of it)
    makes the alert new, not negative: age 0.
    """
    return max(0.0, now - timestamp)


def stale_alert(
    timestamp: float, priority: Priority, *, now: float, limits: Mapping[Priority, float]
) -> Blocked | None:
    """Whether an alert is too old to ring anyone now.

    Args:
        timestamp: when the sensor raised it (the payload's `timestamp`, epoch seconds) — not
            when tripline accepted it: a backlog accepted a minute ago can be hours old.
        priority: its dial priority.
        now: the moment of dialing, epoch seconds.
        limits: the oldest alert each priority still calls about; a priority left out has none.

    Returns:
        None when it may still be called; else Blocked(stale), its task due now.
    """
    limit = limits.get(priority)
    if limit is None:
        return None
    age = alert_age(timestamp, now=now)
    if age <= limit:
        return None
    detail = (
        f"the alert is {span(age)} old by its sensor's clock; {priority.label} alerts ring "
        f"nobody past {span(limit)} ([dialer] max_alert_age_seconds)"
    )
    facts = {"rule": "max_alert_age", "alertAgeSeconds": round(age), "maxAlertAgeSeconds": limit}
    return Blocked(Reason.STALE, now, detail, facts)


def profile_fresh(fetched_at: float | None, *, now: float, max_age: float) -> bool:
    """Whether flags the CRM answered at `fetched_at` may be dialed on at `now`.

    Unknown (None: a profile cached before its reading time was kept) is not fresh. A reading
    time ahead of `now` (another instance's clock runs ahead) vouches for the profile only
    within `max_age` too: a stamp hours ahead is a broken clock, not a fresh read.
    """
    if fetched_at is None:
        return False
    return abs(now - fetched_at) <= max_age


def dial_time_flags(
    view: Customer | None, *, now: float, rules: ComplyRules, why_none: str
) -> Blocked | None:
    """The flags of a profile read at the moment of dialing: may the call go?

    Args:
        view: the profile as seen through the contact about to be called (the account holder's
            do-not-call and do-not-disturb, both consents), or None when the CRM no longer has
            the customer or that number.
        now: the moment of dialing, epoch seconds.
        rules: for the next business day a task is due on.
        why_none: what the task says when `view` is None.

    Returns:
        None when the flags allow the call; Blocked (do_not_call, do_not_disturb, no_contact).
    """
    if view is None:
        blocked = comply(None, now=now, rules=rules, unknown_because=why_none)
        assert isinstance(blocked, Blocked)  # noqa: S101 - comply blocks an unknown customer
        return blocked
    return check_flags(view, now=now, rules=rules)


def span(seconds: float) -> str:
    """A duration as people read it: 45s, 12m30s, 2h05m, 3d04h."""
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s" if secs else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"
