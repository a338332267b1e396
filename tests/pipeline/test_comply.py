"""Compliance: contact data, consent, DNC, DND and the customer-local calling window."""

from __future__ import annotations

from datetime import UTC, datetime

import pendulum
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tripline.conf.rules import load_rules
from tripline.conf.schema import load
from tripline.messages import Alert, Customer, Priority, Reason, TaskIntent
from tripline.pipeline.calling_window import CallingRules
from tripline.pipeline.comply import (
    Allowed,
    Blocked,
    ComplyRules,
    check_window,
    comply,
    local_time,
    normalise_phone,
    schedulable,
)

RULES = ComplyRules(calling=load_rules(), safety_override=frozenset({"co_alarm"}))
# Tuesday 2024-05-14 16:00 UTC = 12:00 in New York.
NOON_NY = datetime(2024, 5, 14, 16, 0, tzinfo=UTC).timestamp()
NIGHT_NY = NOON_NY - 9 * 3600  # 03:00 local


def customer(**changes: object) -> Customer:
    fields: dict[str, object] = {
        "customer_id": "C",
        "name": "N",
        "phone": "+12125550199",
        "timezone": "America/New_York",
        "do_not_disturb": False,
        "do_not_call": False,
        "country": "US",
        "region": "US-NY",
    }
    fields.update(changes)
    return Customer(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("who", "now", "kwargs", "reason", "rule"),
    [
        pytest.param(None, NOON_NY, {}, Reason.NO_CONTACT, None, id="unknown-customer"),
        pytest.param(
            None,
            NOON_NY,
            {"crm_unavailable": True},
            Reason.CRM_UNAVAILABLE,
            None,
            id="crm-down-and-no-cache",
        ),
        pytest.param(customer(phone=""), NOON_NY, {}, Reason.NO_CONTACT, None, id="no-phone"),
        pytest.param(
            customer(phone="+15551234567"),
            NOON_NY,
            {},
            Reason.INVALID_PHONE,
            None,
            id="invalid-phone",
        ),
        pytest.param(
            customer(do_not_call=True),
            NOON_NY,
            {},
            Reason.DO_NOT_CALL,
            "crm_do_not_call",
            id="crm-dnc-flag",
        ),
        pytest.param(
            customer(),
            NOON_NY,
            {"on_dnc_list": True},
            Reason.DO_NOT_CALL,
            "internal_dnc_list",
            id="internal-dnc-list",
        ),
        pytest.param(
            customer(call_consent=False),
            NOON_NY,
            {},
            Reason.DO_NOT_CALL,
            "consent_revoked",
            id="consent-revoked",
        ),
        pytest.param(
            customer(do_not_disturb=True),
            NOON_NY,
            {},
            Reason.DO_NOT_DISTURB,
            "do_not_disturb",
            id="dnd",
        ),
        pytest.param(
            customer(do_not_call=True, do_not_disturb=True),
            NOON_NY,
            {},
            Reason.DO_NOT_CALL,
            "crm_do_not_call",
            id="dnc-named-before-dnd",
        ),
        pytest.param(
            customer(),
            NIGHT_NY,
            {},
            Reason.OUTSIDE_CALLING_WINDOW,
            "calling_window:US",
            id="3am-local-is-outside",
        ),
        pytest.param(
            customer(),
            NOON_NY + 8 * 3600,
            {},
            Reason.OUTSIDE_CALLING_WINDOW,
            "calling_window:US",
            id="20-00-local-is-outside",
        ),
        pytest.param(
            customer(),
            NIGHT_NY,
            {"alert_type": "temp_critical"},
            Reason.OUTSIDE_CALLING_WINDOW,
            "calling_window:US",
            id="3am-local-is-outside-for-a-type-without-override",
        ),
        pytest.param(
            customer(region="LA", timezone="America/Chicago"),
            datetime(2024, 5, 19, 17, 0, tzinfo=UTC).timestamp(),  # Sunday 12:00 CDT
            {},
            Reason.OUTSIDE_CALLING_WINDOW,
            "calling_window:US-LA",
            id="bare-region-code-louisiana-sunday",
        ),
        pytest.param(
            customer(region="LA", timezone="America/Chicago"),
            datetime(2025, 3, 4, 18, 0, tzinfo=UTC).timestamp(),  # Mardi Gras 12:00 CST
            {},
            Reason.HOLIDAY,
            "calling_window:US-LA",
            id="bare-region-code-louisiana-holiday",
        ),
        pytest.param(
            customer(),
            NIGHT_NY,
            {"alert_type": "co_alarm", "on_dnc_list": True},
            Reason.DO_NOT_CALL,
            "internal_dnc_list",
            id="safety-override-never-past-dnc",
        ),
        pytest.param(
            customer(do_not_disturb=True),
            NIGHT_NY,
            {"alert_type": "co_alarm"},
            Reason.DO_NOT_DISTURB,
            "do_not_disturb",
            id="safety-override-never-past-dnd",
        ),
        pytest.param(
            customer(region="US-RI", timezone="America/New_York"),
            NOON_NY - 3.5 * 3600,
            {},
            Reason.OUTSIDE_CALLING_WINDOW,
            "calling_window:US-RI",
            id="rhode-island-opens-at-nine",
        ),
    ],
)
def test_blocked(
    who: Customer | None, now: float, kwargs: dict[str, object], reason: Reason, rule: str | None
) -> None:
    decision = comply(who, now=now, rules=RULES, **kwargs)  # type: ignore[arg-type]
    assert isinstance(decision, Blocked)
    assert decision.reason == reason
    assert decision.due > now
    if rule is not None:
        assert decision.facts["rule"] == rule


def test_an_unknown_customer_task_says_why_they_are_unknown() -> None:
    why = "CRM answered for customer 'C-2', not 'C-1'"
    decision = comply(None, now=NOON_NY, rules=RULES, unknown_because=why)
    assert isinstance(decision, Blocked)
    assert (decision.reason, decision.detail) == (Reason.NO_CONTACT, why)
    unknown = comply(None, now=NOON_NY, rules=RULES)
    assert isinstance(unknown, Blocked)
    assert unknown.detail == "no customer record"


def test_noon_is_allowed_with_e164_number_and_facts() -> None:
    decision = comply(customer(phone="+1 212-555-0199"), now=NOON_NY, rules=RULES)
    assert isinstance(decision, Allowed)
    assert decision.phone == "+12125550199"
    assert decision.facts["timezone"] == "America/New_York"
    assert decision.facts["localTime"].startswith("2024-05-14T12:00:00")
    assert decision.facts["rule"] == "calling_window:US"
    assert decision.facts["window"] == "08:00-20:00"
    assert decision.facts["rulesVersion"] == RULES.calling.version


def test_safety_override_calls_outside_the_window_and_says_so() -> None:
    decision = comply(customer(), now=NIGHT_NY, rules=RULES, alert_type="co_alarm")
    assert isinstance(decision, Allowed)
    assert decision.facts["override"] == "safety_override:co_alarm"
    assert check_window(customer(), now=NIGHT_NY, rules=RULES, alert_type="co_alarm") is None


def test_louisiana_sunday_waits_for_monday_morning() -> None:
    sunday_noon = datetime(2024, 5, 19, 17, 0, tzinfo=UTC).timestamp()  # 12:00 CDT
    who = customer(region="US-LA", timezone="America/Chicago")
    decision = comply(who, now=sunday_noon, rules=RULES)
    assert isinstance(decision, Blocked)
    assert decision.reason == Reason.OUTSIDE_CALLING_WINDOW
    due = pendulum.from_timestamp(decision.due).in_timezone("America/Chicago")
    assert (due.day_of_week, due.hour, due.minute) == (pendulum.MONDAY, 8, 0)


def test_louisiana_state_holiday_is_closed() -> None:
    mardi_gras = datetime(2025, 3, 4, 18, 0, tzinfo=UTC).timestamp()  # Tuesday 12:00 CST
    who = customer(region="US-LA", timezone="America/Chicago")
    decision = comply(who, now=mardi_gras, rules=RULES)
    assert isinstance(decision, Blocked)
    assert decision.reason == Reason.HOLIDAY
    assert "Mardi Gras" in decision.facts["holiday"]
    due = pendulum.from_timestamp(decision.due).in_timezone("America/Chicago")
    assert (due.day, due.hour) == (5, 8)


def test_dnd_task_is_due_next_business_day_at_nine_local() -> None:
    friday_noon = datetime(2024, 5, 17, 16, 0, tzinfo=UTC).timestamp()
    decision = comply(customer(do_not_disturb=True), now=friday_noon, rules=RULES)
    assert isinstance(decision, Blocked)
    due = pendulum.from_timestamp(decision.due).in_timezone("America/New_York")
    assert (due.day_of_week, due.hour, due.minute) == (pendulum.MONDAY, 9, 0)


def test_next_business_day_skips_a_federal_holiday() -> None:
    before_memorial_day = datetime(2024, 5, 24, 16, 0, tzinfo=UTC).timestamp()  # Friday
    decision = comply(customer(do_not_disturb=True), now=before_memorial_day, rules=RULES)
    assert isinstance(decision, Blocked)
    due = pendulum.from_timestamp(decision.due).in_timezone("America/New_York")
    assert (due.month, due.day) == (5, 28)  # Monday 27th is Memorial Day


def test_bad_zone_falls_back_to_the_phone_numbers_zone() -> None:
    decision = comply(
        customer(timezone="Mars/Olympus", phone="+14155550100"), now=NOON_NY, rules=RULES
    )
    assert isinstance(decision, Allowed)
    assert decision.facts["timezone"] == "America/Los_Angeles"


@pytest.mark.parametrize("raw", ["+1 (415) 555-0100", "+14155550100", "+44 20 7946 0123"])
def test_normalise_phone(raw: str) -> None:
    number = normalise_phone(raw)
    assert number is not None
    assert number.startswith("+")


ZONES = ["UTC", "America/New_York", "Asia/Kolkata", "Australia/Adelaide", "Asia/Kathmandu"]


@given(
    second=st.integers(min_value=946_684_800, max_value=4_102_444_800),  # 2000-2100
    # Not within a microsecond of the next second: pendulum rounds to the microsecond there.
    micros=st.integers(min_value=0, max_value=999_998),
    zone=st.sampled_from(ZONES),
)
def test_local_time_is_the_exact_wall_clock_to_the_second(
    second: int, micros: int, zone: str
) -> None:
    # Cached per second and zone: it must still be the wall clock pendulum computes, whole
    # seconds included, in zones with half- and quarter-hour offsets and across DST.
    now = second + micros / 1_000_000
    exact = pendulum.from_timestamp(now).in_timezone(zone)
    local = local_time(now, zone)
    assert local.timezone_name == zone
    assert local.replace(microsecond=0) == exact.replace(microsecond=0)
    assert (local.hour, local.minute, local.second) == (exact.hour, exact.minute, exact.second)


# --- the calling window at its edges, and what a blocked or allowed call records ---------------

MONDAY_NOON_NY = datetime(2024, 5, 13, 16, 0, tzinfo=UTC).timestamp()


def _ny(day: int, hour: int, minute: int = 0) -> float:
    return pendulum.datetime(2024, 5, day, hour, minute, tz="America/New_York").timestamp()


@pytest.mark.parametrize(
    ("now", "alert_type", "allowed"),
    [
        pytest.param(_ny(14, 7, 59), "", False, id="07-59"),
        pytest.param(_ny(14, 8, 0), "", True, id="08-00"),
        pytest.param(_ny(14, 8, 30), "", True, id="08-30"),
        pytest.param(_ny(14, 19, 59), "", True, id="19-59"),
        pytest.param(_ny(14, 20, 0), "", False, id="20-00"),
        pytest.param(_ny(14, 20, 30), "", False, id="20-30"),
        pytest.param(_ny(14, 3, 0), "temp_critical", False, id="03-00-no-override"),
        pytest.param(_ny(14, 3, 0), "co_alarm", True, id="03-00-safety-override"),
        pytest.param(_ny(14, 3, 0), "", False, id="03-00-no-type"),
    ],
)
def test_check_window_at_the_edges(now: float, alert_type: str, allowed: bool) -> None:
    blocked = check_window(customer(), now=now, rules=RULES, alert_type=alert_type)
    assert (blocked is None) is allowed


def test_an_empty_type_is_never_overridden_even_if_configured() -> None:
    rules = ComplyRules(calling=RULES.calling, safety_override=frozenset({""}))
    assert check_window(customer(), now=NIGHT_NY, rules=rules) is not None


def test_a_call_outside_the_window_is_due_when_it_opens_and_says_why() -> None:
    decision = comply(customer(), now=_ny(14, 20, 30), rules=RULES, alert_type="temp_critical")
    assert isinstance(decision, Blocked)
    assert decision.due == _ny(15, 8)
    assert decision.detail == "local time Tue 20:30 America/New_York"
    assert decision.facts == {
        "timezone": "America/New_York",
        "localTime": "2024-05-14T20:30:00-04:00",
        "country": "US",
        "region": "US-NY",
        "rulesVersion": RULES.calling.version,
        "rule": "calling_window:US",
        "window": "08:00-20:00",
    }


def test_a_closed_day_says_which() -> None:
    sunday_noon = datetime(2024, 5, 19, 17, 0, tzinfo=UTC).timestamp()
    who = customer(region="US-LA", timezone="America/Chicago")
    decision = comply(who, now=sunday_noon, rules=RULES)
    assert isinstance(decision, Blocked)
    assert decision.detail == "local time Sun 12:00 America/Chicago (sunday closed)"
    assert decision.facts["window"] == "closed"


def test_a_holiday_task_names_it() -> None:
    mardi_gras = datetime(2025, 3, 4, 18, 0, tzinfo=UTC).timestamp()
    who = customer(region="US-LA", timezone="America/Chicago")
    decision = comply(who, now=mardi_gras, rules=RULES)
    assert isinstance(decision, Blocked)
    assert (decision.reason, decision.detail) == (Reason.HOLIDAY, "no calls on Mardi Gras")
    assert (decision.facts["holiday"], decision.facts["window"]) == ("Mardi Gras", "closed")


def test_inside_the_window_a_safety_type_records_no_override() -> None:
    decision = comply(customer(), now=NOON_NY, rules=RULES, alert_type="co_alarm")
    assert isinstance(decision, Allowed)
    assert "override" not in decision.facts


def test_a_monday_task_is_due_tuesday_at_nine_local() -> None:
    decision = comply(customer(do_not_disturb=True), now=MONDAY_NOON_NY, rules=RULES)
    assert isinstance(decision, Blocked)
    assert decision.due == _ny(14, 9)


def test_the_due_hour_is_configurable() -> None:
    rules = ComplyRules(calling=RULES.calling, due_hour=14)
    decision = comply(customer(do_not_disturb=True), now=MONDAY_NOON_NY, rules=rules)
    assert isinstance(decision, Blocked)
    assert decision.due == _ny(14, 14)


def test_an_unknown_customer_is_due_the_next_business_day_at_nine_utc() -> None:
    decision = comply(None, now=MONDAY_NOON_NY, rules=RULES)
    assert isinstance(decision, Blocked)
    assert decision.due == datetime(2024, 5, 14, 9, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("phone", "zone"),
    [
        pytest.param("+14155550100", "America/Los_Angeles", id="the-numbers-only-zone"),
        pytest.param("+18005550199", "UTC", id="a-number-of-many-zones-is-utc"),
        pytest.param("+80012345678", "UTC", id="a-number-of-no-zone-is-utc"),
        pytest.param("not a number", "UTC", id="no-number-is-utc"),
    ],
)
def test_without_a_valid_zone_the_phone_decides_or_utc(phone: str, zone: str) -> None:
    decision = comply(customer(timezone="", phone=phone), now=NOON_NY, rules=RULES)
    assert decision.facts["timezone"] == zone


def test_the_defaults_are_empty() -> None:
    assert ComplyRules() == ComplyRules(
        calling=CallingRules(), safety_override=frozenset(), due_hour=9
    )
    assert Allowed("+12125550199").facts == {}
    blocked = Blocked(Reason.HOLIDAY, 5.0)
    assert (blocked.detail, blocked.facts) == ("", {})
    alert = Alert(
        idempotency_key="k",
        sensor_id="s",
        customer_id="c",
        alert_type="t",
        timestamp=0.0,
        firing=True,
        severity="",
        current_value=1.0,
        threshold=0.5,
        unit="u",
        reference_id="r",
        telemetry_hash="h",
        accepted_at=0.0,
    )
    assert blocked.task(alert) == TaskIntent(
        alert=alert, reason=Reason.HOLIDAY, due=5.0, detail="", facts=()
    )


_SCHEDULED = ComplyRules(scheduled_callbacks=frozenset({Priority.CRITICAL, Priority.HIGH}))


@pytest.mark.parametrize(
    ("reason", "priority", "rules", "scheduled"),
    [
        # only 'not now' may be waited out, and only by the priorities configured for it
        (Reason.OUTSIDE_CALLING_WINDOW, Priority.CRITICAL, _SCHEDULED, True),
        (Reason.HOLIDAY, Priority.HIGH, _SCHEDULED, True),
        (Reason.OUTSIDE_CALLING_WINDOW, Priority.NORMAL, _SCHEDULED, False),
        (Reason.DO_NOT_CALL, Priority.CRITICAL, _SCHEDULED, False),
        (Reason.DO_NOT_DISTURB, Priority.CRITICAL, _SCHEDULED, False),
        (Reason.NO_CONTACT, Priority.CRITICAL, _SCHEDULED, False),
        # by default every blocked alert is a task, as before
        (Reason.OUTSIDE_CALLING_WINDOW, Priority.CRITICAL, ComplyRules(), False),
    ],
)
def test_which_blocked_alerts_become_scheduled_callbacks(
    reason: Reason, priority: Priority, rules: ComplyRules, scheduled: bool
) -> None:
    assert schedulable(Blocked(reason, 0.0), priority, rules) is scheduled


def test_the_rules_defaults_are_the_shipped_configs() -> None:
    shipped = load()
    rules = ComplyRules()
    assert rules.recheck_before == shipped.comply.scheduled_recheck_seconds
    assert rules.scheduled_callbacks == frozenset(
        Priority.from_label(p)
        for p, action in shipped.comply.blocked_action.items()
        if action == "scheduled_callback"
    )
