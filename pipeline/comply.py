"""Compliance before every call: contact data, do-not-call, do-not-disturb, the calling window."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pendulum
import phonenumbers

from messages import Customer, Reason

_WEEKEND = (5, 6)  # pendulum: Monday is 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ComplyRules:
    """What comply needs from the [comply] config section."""

    window_start: tuple[int, int] = (8, 0)
    """Earliest local time a call may start (hour, minute)."""
    window_end: tuple[int, int] = (20, 0)
    """Local time from which no call may start."""
    due_hour: int = 9
    """Local hour a next-business-day task is due."""


@dataclass(frozen=True, slots=True)
class Allowed:
    """A call may be placed now."""

    phone: str
    """The number to call, E.164."""
    facts: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Blocked:
    """No call: raise a task due at `due` instead."""

    reason: Reason
    due: float
    """Epoch seconds."""
    detail: str = ""
    facts: dict[str, Any] = field(default_factory=dict)


def comply(
    customer: Customer | None, *, now: float, rules: ComplyRules, crm_unavailable: bool = False
) -> Allowed | Blocked:
    """Decide whether this customer may be called now.

    Args:
        customer: the enriched customer, or None when unknown.
        now: the current time, epoch seconds.
        rules: the calling window and task timing.
        crm_unavailable: the customer is None because the CRM could not be asked.

    Returns:
        Allowed with the E.164 number, or Blocked with the reason and when the task is due.
    """
    utc = pendulum.from_timestamp(now)
    if customer is None:
        reason = Reason.CRM_UNAVAILABLE if crm_unavailable else Reason.NO_CONTACT
        return Blocked(reason, _next_business_day(utc, rules), "no customer record")
    zone = zone_of(customer)
    local = utc.in_timezone(zone)
    facts: dict[str, Any] = {
        "timezone": zone,
        "localTime": local.isoformat(),
        "window": _window_label(rules),
    }
    if not customer.phone:
        return Blocked(Reason.NO_CONTACT, _next_business_day(local, rules), "no phone", facts)
    phone = normalise_phone(customer.phone)
    if phone is None:
        return Blocked(
            Reason.INVALID_PHONE,
            _next_business_day(local, rules),
            "phone is not a valid number",
            facts,
        )
    if customer.do_not_call:
        return Blocked(
            Reason.DO_NOT_CALL,
            _next_business_day(local, rules),
            "customer is on a do-not-call list",
            {**facts, "rule": "doNotCall"},
        )
    if customer.do_not_disturb:
        return Blocked(
            Reason.DO_NOT_DISTURB,
            _next_business_day(local, rules),
            "customer asked not to be disturbed",
            {**facts, "rule": "doNotDisturb"},
        )
    blocked = check_window(customer, now=now, rules=rules)
    return blocked if blocked is not None else Allowed(phone, facts)


def check_window(customer: Customer, *, now: float, rules: ComplyRules) -> Blocked | None:
    """The calling-window rule alone: run again at the moment of dialing, as work may wait.

    Returns:
        None when a call may start now, else Blocked until the next window opens.
    """
    zone = zone_of(customer)
    local = pendulum.from_timestamp(now).in_timezone(zone)
    if in_window(local, rules):
        return None
    facts = {
        "timezone": zone,
        "localTime": local.isoformat(),
        "window": _window_label(rules),
        "rule": "calling_window",
    }
    return Blocked(
        Reason.OUTSIDE_CALLING_WINDOW,
        next_window_start(local, rules).timestamp(),
        f"local time {local.format('HH:mm')} {zone}",
        facts,
    )


def in_window(local: pendulum.DateTime, rules: ComplyRules) -> bool:
    """Whether a call may start at this local time."""
    minute = local.hour * 60 + local.minute
    start = rules.window_start[0] * 60 + rules.window_start[1]
    end = rules.window_end[0] * 60 + rules.window_end[1]
    return start <= minute < end


def next_window_start(local: pendulum.DateTime, rules: ComplyRules) -> pendulum.DateTime:
    """The next local moment a call may start (today's window if it is still ahead)."""
    start = local.set(
        hour=rules.window_start[0], minute=rules.window_start[1], second=0, microsecond=0
    )
    if start <= local:
        start = start.add(days=1).set(hour=rules.window_start[0], minute=rules.window_start[1])
    return start


def normalise_phone(raw: str) -> str | None:
    """E.164 form of a number, or None when it is not a valid number."""
    try:
        number = phonenumbers.parse(raw, None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def zone_of(customer: Customer) -> str:
    """The customer's IANA zone; failing that, the phone's only zone; failing that, UTC."""
    try:
        pendulum.timezone(customer.timezone)
    except (ValueError, pendulum.tz.exceptions.InvalidTimezone):
        pass
    else:
        if customer.timezone:
            return customer.timezone
    try:
        from phonenumbers import timezone as phone_tz  # noqa: PLC0415 - 40 MB of data, rarely needed

        zones = phone_tz.time_zones_for_number(phonenumbers.parse(customer.phone, None))
    except phonenumbers.NumberParseException:
        zones = ()
    return zones[0] if len(zones) == 1 and zones[0] != "Etc/Unknown" else "UTC"


def _next_business_day(moment: pendulum.DateTime, rules: ComplyRules) -> float:
    day = moment.add(days=1)
    while day.day_of_week in _WEEKEND:
        day = day.add(days=1)
    return day.set(hour=rules.due_hour, minute=0, second=0, microsecond=0).timestamp()


def _window_label(rules: ComplyRules) -> str:
    (h1, m1), (h2, m2) = rules.window_start, rules.window_end
    return f"{h1:02d}:{m1:02d}-{h2:02d}:{m2:02d}"
