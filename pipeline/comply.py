"""Compliance before every call: contact data, consent, do-not-call, DND, the calling window."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pendulum
import phonenumbers

from tripline.messages import Alert, Customer, Priority, Reason, TaskIntent
from tripline.pipeline.calling_window import (
    CallingRules,
    DayRule,
    day_status,
    format_window,
    inside,
    next_business_day,
    next_window_start,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ComplyRules:
    """What comply needs: the calling rules data and the [comply] section."""

    calling: CallingRules = field(default_factory=CallingRules)
    safety_override: frozenset[str] = frozenset()
    """Alert types allowed to call outside the calling window (never past DNC, DND, consent)."""
    due_hour: int = 9
    """Local hour a next-business-day task is due."""
    scheduled_callbacks: frozenset[Priority] = frozenset()
    """Priorities whose alerts, blocked only by the calling window, become a callback
    scheduled at the window's next opening instead of a task ([comply] blocked_action)."""
    recheck_before: float = 600.0
    """How long before a scheduled callback is due it is checked again."""


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

    def task(self, alert: Alert) -> TaskIntent:
        """The task the alert becomes instead of its call."""
        return TaskIntent(
            alert=alert,
            reason=self.reason,
            due=self.due,
            detail=self.detail,
            facts=tuple(self.facts.items()),
        )


def comply(
    customer: Customer | None,
    *,
    now: float,
    rules: ComplyRules,
    alert_type: str = "",
    on_dnc_list: bool = False,
    crm_unavailable: bool = False,
    unknown_because: str = "",
) -> Allowed | Blocked:
    """Decide whether this customer may be called now about this alert.

    Args:
        customer: the enriched customer, or None when unknown.
        now: the current time, epoch seconds.
        rules: calling rules, safety overrides, task timing.
        alert_type: the alert's type (a safety override may apply to it).
        on_dnc_list: the number is on the internal do-not-call list.
        crm_unavailable: the customer is None because the CRM could not be asked.
        unknown_because: why the customer is None, for the task (e.g. the CRM answered with
            another customer's document).

    Returns:
        Allowed with the E.164 number, or Blocked with the reason and when the task is due.
    """
    if customer is None:
        reason = Reason.CRM_UNAVAILABLE if crm_unavailable else Reason.NO_CONTACT
        utc = local_time(now, "UTC")
        detail = unknown_because or "no customer record"
        return Blocked(reason, _next_business_day(utc, rules, "", ""), detail)
    local = local_time(now, zone_of(customer))
    facts = _facts(customer, local, rules)
    due = _DueLater(local, rules, customer.country, customer.region)
    if not customer.phone:
        return Blocked(Reason.NO_CONTACT, due(), "the customer has no phone number", facts)
    phone = normalise_phone(customer.phone)
    if phone is None:
        return Blocked(Reason.INVALID_PHONE, due(), "the phone is not a valid number", facts)
    blocked = _flags(customer, on_dnc_list, facts, due)
    if blocked is not None:
        return blocked
    blocked = check_window(customer, now=now, rules=rules, alert_type=alert_type)
    if blocked is not None:
        return blocked
    window_facts = _window_facts(customer, local, rules, alert_type)
    return Allowed(phone, {**facts, **window_facts})


def check_flags(
    customer: Customer, *, now: float, rules: ComplyRules, on_dnc_list: bool = False
) -> Blocked | None:
    """The customer's flags alone — do-not-call, consent, do-not-disturb — as comply reads them.

    Run again at the moment of dialing on a profile no older than [crm] max_profile_age_seconds
    (actors/dialing/gate.py): a flag the CRM gained since the decision is honoured.

    Returns:
        None when the flags allow a call, else Blocked with a task due the next business day.
    """
    local = local_time(now, zone_of(customer))
    facts = _facts(customer, local, rules)
    return _flags(
        customer, on_dnc_list, facts, _DueLater(local, rules, customer.country, customer.region)
    )


def _flags(
    customer: Customer, on_dnc_list: bool, facts: dict[str, Any], due: Callable[[], float]
) -> Blocked | None:
    for flagged, rule, detail in (
        (customer.do_not_call, "crm_do_not_call", "the CRM flags the customer do-not-call"),
        (on_dnc_list, "internal_dnc_list", "the number is on the internal do-not-call list"),
        (not customer.call_consent, "consent_revoked", "the customer revoked consent to calls"),
    ):
        if flagged:
            return Blocked(Reason.DO_NOT_CALL, due(), detail, {**facts, "rule": rule})
    if customer.do_not_disturb:
        return Blocked(
            Reason.DO_NOT_DISTURB,
            due(),
            "the customer asked not to be disturbed",
            {**facts, "rule": "do_not_disturb"},
        )
    return None


WINDOW_REASONS = frozenset({Reason.OUTSIDE_CALLING_WINDOW, Reason.HOLIDAY})
"""The reasons that only say 'not now': a scheduled callback may wait them out."""


def schedulable(decision: Blocked, priority: Priority, rules: ComplyRules) -> bool:
    """Whether a blocked alert becomes a callback scheduled at `decision.due` instead of a task.

    Only the calling window may be waited out: comply checks it last, so a window-blocked
    customer passed contact data, do-not-call, consent and DND already.
    """
    return decision.reason in WINDOW_REASONS and priority in rules.scheduled_callbacks


def check_window(
    customer: Customer, *, now: float, rules: ComplyRules, alert_type: str = ""
) -> Blocked | None:
    """The calling-window rule alone: run again at the moment of dialing, as work may wait.

    Returns:
        None when a call may start now, else Blocked until the next window opens.
    """
    if alert_type and alert_type in rules.safety_override:
        return None
    local = local_time(now, zone_of(customer))
    rule = _rule(customer, rules)
    status = day_status(local, rule, customer.country, customer.region)
    if status.window is not None and inside(local, status.window):
        return None
    facts = {
        **_facts(customer, local, rules),
        "rule": f"calling_window:{rule.name}",
        "window": format_window(status.window),
    }
    due = next_window_start(local, rule, customer.country, customer.region)
    if status.closed_by.startswith("holiday:"):
        facts["holiday"] = status.closed_by.removeprefix("holiday:")
        return Blocked(Reason.HOLIDAY, due.timestamp(), f"no calls on {facts['holiday']}", facts)
    closed = f" ({status.closed_by} closed)" if status.closed_by else ""
    detail = f"local time {local.format('ddd HH:mm')} {local.timezone_name}{closed}"
    return Blocked(Reason.OUTSIDE_CALLING_WINDOW, due.timestamp(), detail, facts)


def local_time(now: float, zone: str) -> pendulum.DateTime:
    """`now` on the wall clock of `zone`, to the second (rules are by the minute)."""
    return _local_second(int(now), zone)


@functools.lru_cache(maxsize=4096)
def _local_second(second: int, zone: str) -> pendulum.DateTime:
    # Every alert of a busy second in one zone shares this: pendulum's conversion is most of
    # the compliance step's cost (README "Performance").
    return pendulum.from_timestamp(second).in_timezone(timezone(zone))


@functools.lru_cache(maxsize=65536)
def normalise_phone(raw: str) -> str | None:
    """E.164 form of a number, or None when it is not a valid number."""
    try:
        number = phonenumbers.parse(raw, None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@functools.lru_cache(maxsize=1024)
def timezone(name: str) -> pendulum.Timezone:
    """A zone object, built once: pendulum reads the zone's data file on every construction."""
    return pendulum.timezone(name)


@functools.lru_cache(maxsize=65536)
def _valid_zone(name: str) -> bool:
    try:
        pendulum.timezone(name)
    except (ValueError, OSError, pendulum.tz.exceptions.InvalidTimezone):
        # OSError: a name that is a directory of the zone database ('America') or too long
        return False
    return True


def zone_of(customer: Customer) -> str:
    """The customer's IANA zone; failing that, the phone's only zone; failing that, UTC."""
    if customer.timezone and _valid_zone(customer.timezone):
        return customer.timezone
    try:
        from phonenumbers import timezone as phone_tz  # noqa: PLC0415 - 40 MB of data, rarely needed

        zones = phone_tz.time_zones_for_number(phonenumbers.parse(customer.phone, None))
    except phonenumbers.NumberParseException:
        zones = ()
    return zones[0] if len(zones) == 1 and zones[0] != "Etc/Unknown" else "UTC"


def _rule(customer: Customer, rules: ComplyRules) -> DayRule:
    return rules.calling.rule_for(customer.country, customer.region)


def _facts(customer: Customer, local: pendulum.DateTime, rules: ComplyRules) -> dict[str, Any]:
    return {
        "timezone": local.timezone_name,
        "localTime": local.isoformat(),
        "country": customer.country,
        "region": customer.region,
        "rulesVersion": rules.calling.version,
    }


def _window_facts(
    customer: Customer, local: pendulum.DateTime, rules: ComplyRules, alert_type: str
) -> dict[str, Any]:
    rule = _rule(customer, rules)
    status = day_status(local, rule, customer.country, customer.region)
    facts: dict[str, Any] = {
        "rule": f"calling_window:{rule.name}",
        "window": format_window(status.window),
    }
    if alert_type in rules.safety_override and not (
        status.window is not None and inside(local, status.window)
    ):
        facts["override"] = f"safety_override:{alert_type}"
    return facts


class _DueLater:
    """The next business day, computed only when a rule blocks (most alerts are allowed)."""

    def __init__(
        self, local: pendulum.DateTime, rules: ComplyRules, country: str, region: str
    ) -> None:
        self._args = (local, rules, country, region)

    def __call__(self) -> float:
        return _next_business_day(*self._args)


def _next_business_day(
    local: pendulum.DateTime, rules: ComplyRules, country: str, region: str
) -> float:
    return next_business_day(local, rules.due_hour, country, region).timestamp()
