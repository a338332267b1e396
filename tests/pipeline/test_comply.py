"""Compliance: contact data, DNC, DND and the customer-local calling window, in every zone."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import available_timezones

import pendulum
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from messages import Customer, Reason
from pipeline.comply import Allowed, Blocked, ComplyRules, comply, in_window, normalise_phone

RULES = ComplyRules()
# Tuesday 2024-05-14 16:00 UTC = 12:00 in New York.
NOON_NY = datetime(2024, 5, 14, 16, 0, tzinfo=UTC).timestamp()
ZONES = sorted(
    z for z in available_timezones() if "/" in z and not z.startswith(("SystemV", "posix", "right"))
)


def customer(**changes: object) -> Customer:
    fields: dict[str, object] = {
        "customer_id": "C",
        "name": "N",
        "phone": "+12125550199",
        "timezone": "America/New_York",
        "do_not_disturb": False,
        "do_not_call": False,
    }
    fields.update(changes)
    return Customer(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("who", "now", "reason"),
    [
        pytest.param(None, NOON_NY, Reason.NO_CONTACT, id="unknown-customer"),
        pytest.param(customer(phone=""), NOON_NY, Reason.NO_CONTACT, id="no-phone"),
        pytest.param(
            customer(phone="+15551234567"), NOON_NY, Reason.INVALID_PHONE, id="invalid-phone"
        ),
        pytest.param(customer(do_not_call=True), NOON_NY, Reason.DO_NOT_CALL, id="dnc"),
        pytest.param(customer(do_not_disturb=True), NOON_NY, Reason.DO_NOT_DISTURB, id="dnd"),
        pytest.param(
            customer(do_not_call=True, do_not_disturb=True),
            NOON_NY,
            Reason.DO_NOT_CALL,
            id="dnc-named-before-dnd",
        ),
        pytest.param(
            customer(), NOON_NY - 9 * 3600, Reason.OUTSIDE_CALLING_WINDOW, id="3am-local-is-outside"
        ),
        pytest.param(
            customer(),
            NOON_NY + 8 * 3600,
            Reason.OUTSIDE_CALLING_WINDOW,
            id="20-00-local-is-outside",
        ),
    ],
)
def test_blocked(who: Customer | None, now: float, reason: Reason) -> None:
    decision = comply(who, now=now, rules=RULES)
    assert isinstance(decision, Blocked)
    assert decision.reason == reason
    assert decision.due > now


def test_crm_unavailable_is_its_own_reason() -> None:
    decision = comply(None, now=NOON_NY, rules=RULES, crm_unavailable=True)
    assert isinstance(decision, Blocked)
    assert decision.reason == Reason.CRM_UNAVAILABLE


def test_noon_is_allowed_with_e164_number_and_facts() -> None:
    decision = comply(customer(phone="+1 212-555-0199"), now=NOON_NY, rules=RULES)
    assert isinstance(decision, Allowed)
    assert decision.phone == "+12125550199"
    assert decision.facts["timezone"] == "America/New_York"
    assert decision.facts["localTime"].startswith("2024-05-14T12:00:00")


def test_dnd_task_is_due_next_business_day_at_nine_local() -> None:
    friday_noon = datetime(2024, 5, 17, 16, 0, tzinfo=UTC).timestamp()
    decision = comply(customer(do_not_disturb=True), now=friday_noon, rules=RULES)
    assert isinstance(decision, Blocked)
    due = pendulum.from_timestamp(decision.due).in_timezone("America/New_York")
    assert (due.day_of_week, due.hour, due.minute) == (pendulum.MONDAY, 9, 0)


def test_bad_zone_falls_back_to_the_phone_numbers_zone() -> None:
    decision = comply(
        customer(timezone="Mars/Olympus", phone="+14155550100"), now=NOON_NY, rules=RULES
    )
    assert isinstance(decision, Allowed)
    assert decision.facts["timezone"] == "America/Los_Angeles"


@pytest.mark.parametrize("raw", ["+1 (415) 555-0100", "+14155550100", "+44 20 7946 0123"])
def test_normalise_phone(raw: str) -> None:
    assert normalise_phone(raw) is not None
    assert normalise_phone(raw).startswith("+")  # type: ignore[union-attr]


@settings(max_examples=400, deadline=None)
@given(
    zone=st.sampled_from(ZONES),
    instant=st.integers(
        min_value=int(datetime(2024, 1, 1, tzinfo=UTC).timestamp()),
        max_value=int(datetime(2027, 12, 31, tzinfo=UTC).timestamp()),
    ),
)
def test_never_a_call_outside_the_window_and_tasks_are_due_at_its_next_start(
    zone: str, instant: int
) -> None:
    decision = comply(customer(timezone=zone), now=float(instant), rules=RULES)
    local = pendulum.from_timestamp(instant).in_timezone(zone)
    if isinstance(decision, Allowed):
        assert in_window(local, RULES)
        return
    assert decision.reason == Reason.OUTSIDE_CALLING_WINDOW
    assert not in_window(local, RULES)
    due = pendulum.from_timestamp(decision.due).in_timezone(zone)
    assert decision.due > instant
    assert in_window(due, RULES)
    assert decision.due - instant <= 24 * 3600 + 3600  # the next window, DST included
