"""Freshness at dialing: the alert's age by its sensor's clock, and the profile's age."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tripline.messages import Customer, Priority, Reason
from tripline.pipeline.comply import Blocked, ComplyRules
from tripline.pipeline.freshness import (
    alert_age,
    dial_time_flags,
    profile_fresh,
    span,
    stale_alert,
)

NOW = 1_800_000_000.0
LIMITS = {Priority.CRITICAL: 14400.0, Priority.HIGH: 7200.0, Priority.LOW: 1800.0}
# Friday 2026-12-04 19:00 UTC: a task of it is due Monday 09:00 (the next business day).
FRIDAY_EVENING = datetime(2026, 12, 4, 19, 0, tzinfo=UTC).timestamp()
MONDAY_9 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("age", "priority", "stale"),
    [
        pytest.param(0.0, Priority.LOW, False, id="just-raised"),
        pytest.param(1800.0, Priority.LOW, False, id="at-the-limit-still-rings"),
        pytest.param(1800.001, Priority.LOW, True, id="past-the-limit-is-stale"),
        pytest.param(2 * 3600, Priority.CRITICAL, False, id="a-co-alarm-2h-old-still-matters"),
        pytest.param(2 * 3600, Priority.HIGH, False, id="high-2h-at-its-limit"),
        pytest.param(2 * 3600 + 1, Priority.HIGH, True, id="high-past-2h-is-stale"),
        pytest.param(4 * 3600 + 1, Priority.CRITICAL, True, id="critical-past-4h-is-stale"),
        pytest.param(10**7, Priority.NORMAL, False, id="no-limit-for-a-priority-left-out"),
        pytest.param(-300.0, Priority.LOW, False, id="a-sensor-clock-ahead-is-new"),
    ],
)
def test_an_alert_is_stale_past_its_prioritys_age_by_its_sensors_clock(
    age: float, priority: Priority, stale: bool
) -> None:
    verdict = stale_alert(NOW - age, priority, now=NOW, limits=LIMITS)
    assert (verdict is not None) == stale
    if verdict is not None:
        assert verdict.reason == Reason.STALE
        assert verdict.due == NOW  # a person looks at it now
        assert verdict.facts["rule"] == "max_alert_age"
        assert verdict.facts["alertAgeSeconds"] == round(age)
        assert verdict.facts["maxAlertAgeSeconds"] == LIMITS[priority]
        assert "max_alert_age_seconds" in verdict.detail
        assert priority.label in verdict.detail


def test_the_detail_says_how_old_the_alert_is_in_words() -> None:
    verdict = stale_alert(NOW - 3 * 3600 - 300, Priority.LOW, now=NOW, limits=LIMITS)
    assert verdict is not None
    assert verdict.detail == (
        "the alert is 3h05m old by its sensor's clock; low alerts ring nobody past 30m "
        "([dialer] max_alert_age_seconds)"
    )


@pytest.mark.parametrize(("ago", "age"), [(0.0, 0.0), (0.5, 0.5), (-30.0, 0.0), (90.0, 90.0)])
def test_an_alerts_age_is_how_long_ago_its_sensor_raised_it(ago: float, age: float) -> None:
    assert alert_age(NOW - ago, now=NOW) == age


@given(
    age=st.floats(min_value=-1e6, max_value=1e8, allow_nan=False),
    later=st.floats(min_value=0, max_value=1e8, allow_nan=False),
    limit=st.floats(min_value=60, max_value=30 * 86400, allow_nan=False),
)
def test_stale_exactly_past_the_limit_and_stale_stays_stale(
    age: float, later: float, limit: float
) -> None:
    limits = {Priority.HIGH: limit}
    stamp = NOW - age
    verdict = stale_alert(stamp, Priority.HIGH, now=NOW, limits=limits)
    assert (verdict is not None) == (NOW - stamp > limit)  # the age as floats hold it
    assert alert_age(stamp, now=NOW) >= 0.0
    if verdict is not None:  # time only makes an alert older
        assert stale_alert(stamp, Priority.HIGH, now=NOW + later, limits=limits) is not None


@pytest.mark.parametrize(
    ("fetched_at", "max_age", "fresh"),
    [
        pytest.param(None, 300.0, False, id="unknown-time-is-not-fresh"),
        pytest.param(NOW, 300.0, True, id="just-read"),
        pytest.param(NOW - 300, 300.0, True, id="at-the-limit"),
        pytest.param(NOW - 300.5, 300.0, False, id="past-the-limit"),
        pytest.param(NOW - 1, 0.0, False, id="zero-means-always-read-again"),
        pytest.param(NOW, 0.0, True, id="zero-and-read-this-instant"),
        pytest.param(NOW + 200, 300.0, True, id="a-clock-a-little-ahead"),
        pytest.param(NOW + 3600, 300.0, False, id="a-stamp-hours-ahead-vouches-for-nothing"),
    ],
)
def test_a_profile_is_fresh_within_its_age(
    fetched_at: float | None, max_age: float, fresh: bool
) -> None:
    assert profile_fresh(fetched_at, now=NOW, max_age=max_age) == fresh


@given(
    age=st.floats(min_value=-1e7, max_value=1e7, allow_nan=False),
    max_age=st.floats(min_value=0, max_value=1e6, allow_nan=False),
    more=st.floats(min_value=0, max_value=1e6, allow_nan=False),
)
def test_a_longer_max_age_never_makes_a_fresh_profile_stale(
    age: float, max_age: float, more: float
) -> None:
    stamp = NOW - age
    fresh = profile_fresh(stamp, now=NOW, max_age=max_age)
    assert fresh == (abs(NOW - stamp) <= max_age)  # the age as floats hold it
    if fresh:
        assert profile_fresh(stamp, now=NOW, max_age=max_age + more)


def customer(**changes: object) -> Customer:
    fields: dict[str, object] = {
        "customer_id": "C",
        "name": "N",
        "phone": "+12125550199",
        "timezone": "UTC",
        "do_not_disturb": False,
        "do_not_call": False,
    }
    fields.update(changes)
    return Customer(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("view", "reason", "rule"),
    [
        pytest.param(customer(), None, None, id="clean-flags-dial"),
        pytest.param(
            customer(do_not_disturb=True),
            Reason.DO_NOT_DISTURB,
            "do_not_disturb",
            id="dnd-set-since-the-decision",
        ),
        pytest.param(
            customer(do_not_call=True), Reason.DO_NOT_CALL, "crm_do_not_call", id="crm-dnc"
        ),
        pytest.param(
            customer(call_consent=False), Reason.DO_NOT_CALL, "consent_revoked", id="consent"
        ),
        pytest.param(None, Reason.NO_CONTACT, None, id="gone-from-the-crm"),
    ],
)
def test_the_flags_read_at_dialing_decide_the_call(
    view: Customer | None, reason: Reason | None, rule: str | None
) -> None:
    verdict = dial_time_flags(view, now=FRIDAY_EVENING, rules=ComplyRules(), why_none="gone")
    if reason is None:
        assert verdict is None
        return
    assert isinstance(verdict, Blocked)
    assert verdict.reason == reason
    assert verdict.due == MONDAY_9  # the next business day, at the task hour
    assert verdict.facts.get("rule") == rule
    if view is None:
        assert verdict.detail == "gone"


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (0, "0s"),
        (59.9, "59s"),
        (60, "1m"),
        (750, "12m30s"),
        (3599, "59m59s"),
        (3600, "1h00m"),
        (7500, "2h05m"),
        (86399, "23h59m"),
        (86400, "1d00h"),
        (273600, "3d04h"),
    ],
)
def test_durations_read_as_people_read_them(seconds: float, words: str) -> None:
    assert span(seconds) == words
