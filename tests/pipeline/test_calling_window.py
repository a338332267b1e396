"""Calling windows across every IANA zone and the DST transitions of 2024-2027."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import available_timezones

import pendulum
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tripline.conf.rules import load_rules
from tripline.messages import Customer, Reason
from tripline.pipeline import calling_window
from tripline.pipeline.calling_window import (
    CallingRules,
    DayRule,
    DayStatus,
    day_status,
    format_window,
    holiday_name,
    inside,
    next_business_day,
    next_window_start,
    parse_window,
)
from tripline.pipeline.comply import Allowed, ComplyRules, comply

RULES = ComplyRules(calling=load_rules())
ZONES = sorted(
    z for z in available_timezones() if "/" in z and not z.startswith(("SystemV", "posix", "right"))
)
JURISDICTIONS = [
    ("", ""),
    ("US", ""),
    ("US", "US-LA"),
    ("US", "US-RI"),
    ("US", "US-UT"),
    ("GB", ""),
    ("DE", ""),
    ("FR", ""),
]
START = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp())
END = int(datetime(2027, 12, 31, tzinfo=UTC).timestamp())


def _transitions() -> list[int]:
    """Instants around every DST change of 2024-2027 in a sample of zones that have DST."""
    out = []
    for zone in (
        "America/New_York",
        "America/Chicago",
        "Europe/London",
        "Europe/Berlin",
        "Australia/Sydney",
        "America/Santiago",
        "Pacific/Chatham",
        "Asia/Tehran",
    ):
        tz = pendulum.timezone(zone)
        for year in range(2024, 2028):
            for month in range(1, 13):
                for day in (1, 8, 15, 22, 29):
                    if day > 28 and month == 2:
                        continue
                    moment = pendulum.datetime(year, month, day, 12, tz=tz)
                    if moment.add(days=7).offset != moment.offset:
                        out.append(int(moment.timestamp()))
    return out


TRANSITIONS = _transitions()


def customer(zone: str, country: str, region: str) -> Customer:
    return Customer(
        customer_id="C",
        name="N",
        phone="+12125550199",
        timezone=zone,
        do_not_disturb=False,
        do_not_call=False,
        country=country,
        region=region,
    )


def check(zone: str, instant: int, country: str, region: str) -> None:
    who = customer(zone, country, region)
    decision = comply(who, now=float(instant), rules=RULES)
    local = pendulum.from_timestamp(instant).in_timezone(zone)
    rule = RULES.calling.rule_for(country, region)
    status = day_status(local, rule, country, region)
    if isinstance(decision, Allowed):
        assert status.window is not None
        assert inside(local, status.window), "never a call outside the window"
        return
    assert decision.reason in (Reason.OUTSIDE_CALLING_WINDOW, Reason.HOLIDAY)
    assert decision.due > instant
    due = pendulum.from_timestamp(decision.due).in_timezone(zone)
    due_status = day_status(due, rule, country, region)
    assert due_status.window is not None, "a task is never due on a closed day"
    assert inside(due, due_status.window), "a task is due inside the next allowed window"
    # and nothing earlier would have been allowed: the minute before is outside (or not later)
    before = pendulum.from_timestamp(decision.due - 60).in_timezone(zone)
    before_status = day_status(before, rule, country, region)
    assert (
        decision.due - 60 < instant
        or before_status.window is None
        or not inside(before, before_status.window)
    )


@settings(max_examples=500, deadline=None)
@given(
    zone=st.sampled_from(ZONES),
    instant=st.integers(min_value=START, max_value=END),
    where=st.sampled_from(JURISDICTIONS),
)
def test_every_zone_any_instant(zone: str, instant: int, where: tuple[str, str]) -> None:
    check(zone, instant, *where)


@settings(max_examples=300, deadline=None)
@given(
    zone=st.sampled_from(
        [
            "America/New_York",
            "Europe/London",
            "Australia/Sydney",
            "America/Santiago",
            "Pacific/Chatham",
            "Asia/Tehran",
            "America/Chicago",
            "Europe/Berlin",
        ]
    ),
    base=st.sampled_from(TRANSITIONS),
    shift=st.integers(min_value=-4 * 86400, max_value=11 * 86400),
    where=st.sampled_from(JURISDICTIONS),
)
def test_around_dst_transitions(zone: str, base: int, shift: int, where: tuple[str, str]) -> None:
    check(zone, base + shift, *where)


def test_parse_window() -> None:
    assert parse_window("08:00-20:00") == (480, 1200)
    assert parse_window("00:00-24:00") == (0, 1440)
    assert parse_window("20:00-08:00") is None
    assert parse_window("8-20") is None
    assert parse_window("08:00-24:30") is None


# --- boundaries: fixed instants and fixed expected values (never inside() as its own oracle) ---

NINE_TO_FIVE = DayRule(weekdays=(9 * 60, 17 * 60), name="nine-to-five")
WEEKDAYS_ONLY = DayRule(saturday=None, sunday=None, name="weekdays-only")
LOUISIANA = DayRule(sunday=None, closed_on_holidays=True, name="US-LA")


def new_york(day: int, hour: int, minute: int = 0) -> pendulum.DateTime:
    """A wall-clock time in May 2024 in New York (the 13th is a Monday)."""
    return pendulum.datetime(2024, 5, day, hour, minute, tz="America/New_York")


@pytest.mark.parametrize(
    ("hour", "minute", "expected"),
    [
        pytest.param(0, 0, False, id="midnight-is-outside"),
        pytest.param(7, 59, False, id="07-59-is-outside"),
        pytest.param(8, 0, True, id="08-00-opens"),
        pytest.param(8, 1, True, id="08-01-is-inside"),
        pytest.param(8, 59, True, id="08-59-is-inside"),
        pytest.param(12, 30, True, id="12-30-is-inside"),
        pytest.param(19, 59, True, id="19-59-is-the-last-minute"),
        pytest.param(20, 0, False, id="20-00-closes"),
        pytest.param(20, 1, False, id="20-01-is-outside"),
        pytest.param(20, 30, False, id="20-30-is-outside"),
        pytest.param(23, 59, False, id="23-59-is-outside"),
    ],
)
def test_inside_by_the_minute(hour: int, minute: int, expected: bool) -> None:
    assert inside(new_york(14, hour, minute), (8 * 60, 20 * 60)) is expected


@pytest.mark.parametrize(
    ("country", "region", "rule"),
    [
        pytest.param("US", "US-LA", "US-LA", id="region-code"),
        pytest.param("US", "LA", "US-LA", id="bare-region-code-is-the-countrys"),
        pytest.param("US", "", "US", id="no-region-is-the-country"),
        pytest.param("US", "US-NY", "US", id="region-without-rule-is-the-country"),
        pytest.param("US", "NY", "US", id="bare-region-without-rule-is-the-country"),
        pytest.param("FR", "", "default", id="country-without-rule-is-the-default"),
        pytest.param("", "", "default", id="nothing-known-is-the-default"),
    ],
)
def test_rule_for_picks_the_most_specific_rule(country: str, region: str, rule: str) -> None:
    assert RULES.calling.rule_for(country, region).name == rule


@pytest.mark.parametrize(
    ("day", "country", "region", "expected"),
    [
        pytest.param(date(2025, 3, 4), "US", "US-LA", "Mardi Gras", id="state-holiday"),
        pytest.param(date(2025, 3, 4), "US", "LA", "Mardi Gras", id="bare-region-code"),
        pytest.param(date(2025, 3, 4), "us", "la", "Mardi Gras", id="lower-case-codes"),
        pytest.param(date(2025, 3, 4), "US", "", None, id="not-a-federal-holiday"),
        pytest.param(date(2025, 3, 5), "US", "US-LA", None, id="the-day-after"),
        pytest.param(date(2025, 7, 4), "US", "US-ZZ", "Independence Day", id="unknown-region"),
        pytest.param(date(2025, 7, 4), "ZZ", "", None, id="unknown-country"),
        pytest.param(date(2025, 7, 4), "", "", None, id="no-country"),
    ],
)
def test_holiday_name(day: date, country: str, region: str, expected: str | None) -> None:
    assert holiday_name(day, country, region) == expected


@pytest.mark.parametrize(
    ("local", "rule", "region", "expected"),
    [
        pytest.param(
            new_york(14, 12), WEEKDAYS_ONLY, "", DayStatus((480, 1200)), id="tuesday-is-open"
        ),
        pytest.param(new_york(18, 12), WEEKDAYS_ONLY, "", DayStatus(None, "saturday"), id="sat"),
        pytest.param(new_york(19, 12), WEEKDAYS_ONLY, "", DayStatus(None, "sunday"), id="sun"),
        pytest.param(
            new_york(18, 12), NINE_TO_FIVE, "", DayStatus((480, 1200)), id="saturday-own-window"
        ),
        pytest.param(
            pendulum.datetime(2025, 3, 4, 12, tz="America/Chicago"),
            LOUISIANA,
            "US-LA",
            DayStatus(None, "holiday:Mardi Gras"),
            id="closed-on-a-holiday",
        ),
        pytest.param(
            pendulum.datetime(2025, 3, 4, 12, tz="America/Chicago"),
            NINE_TO_FIVE,
            "US-LA",
            DayStatus((540, 1020)),
            id="holidays-open-by-default",
        ),
    ],
)
def test_day_status(
    local: pendulum.DateTime, rule: DayRule, region: str, expected: DayStatus
) -> None:
    assert day_status(local, rule, "US", region) == expected


@pytest.mark.parametrize(
    ("local", "rule", "expected"),
    [
        pytest.param(new_york(14, 7, 59), NINE_TO_FIVE, new_york(14, 9), id="before-opening"),
        pytest.param(new_york(14, 9), NINE_TO_FIVE, new_york(14, 9), id="at-opening-is-now"),
        pytest.param(new_york(14, 12, 30), NINE_TO_FIVE, new_york(14, 12, 30), id="inside-is-now"),
        pytest.param(new_york(14, 17), NINE_TO_FIVE, new_york(15, 9), id="at-closing-tomorrow"),
        pytest.param(new_york(17, 20), WEEKDAYS_ONLY, new_york(20, 8), id="friday-to-monday"),
        pytest.param(
            new_york(18, 12), LOUISIANA, new_york(18, 12), id="saturday-open-in-louisiana"
        ),
        pytest.param(new_york(19, 7), LOUISIANA, new_york(20, 8), id="sunday-to-monday"),
    ],
)
def test_next_window_start(
    local: pendulum.DateTime, rule: DayRule, expected: pendulum.DateTime
) -> None:
    assert next_window_start(local, rule, "US", "US-LA") == expected


def test_a_rule_that_never_opens_is_a_configuration_error() -> None:
    never = DayRule(weekdays=None, saturday=None, sunday=None, name="never")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^rule never allows no call within 14 days$"):
        next_window_start(new_york(14, 12), never, "US", "")


@pytest.mark.parametrize(
    ("local", "region", "expected"),
    [
        pytest.param(new_york(13, 12), "US-NY", new_york(14, 9), id="monday-to-tuesday"),
        pytest.param(new_york(13, 23, 59), "US-NY", new_york(14, 9), id="late-monday"),
        pytest.param(new_york(17, 12), "US-NY", new_york(20, 9), id="friday-to-monday"),
        pytest.param(new_york(18, 12), "US-NY", new_york(20, 9), id="saturday-to-monday"),
        pytest.param(new_york(19, 12), "US-NY", new_york(20, 9), id="sunday-to-monday"),
        pytest.param(new_york(24, 12), "US-NY", new_york(28, 9), id="over-memorial-day"),
    ],
)
def test_next_business_day(
    local: pendulum.DateTime, region: str, expected: pendulum.DateTime
) -> None:
    assert next_business_day(local, 9, "US", region) == expected


@pytest.mark.parametrize(
    ("text", "window"),
    [
        pytest.param("08:00-20:00", (480, 1200), id="the-default"),
        pytest.param(" 09:05 - 17:45 ", (545, 1065), id="spaces-and-minutes"),
        pytest.param("00:00-24:00", (0, 1440), id="the-whole-day"),
        pytest.param("8:00-9:00", (480, 540), id="one-digit-hour"),
        pytest.param("08:00-08:01", (480, 481), id="one-minute"),
        pytest.param("08:00-08:00", None, id="empty-window"),
        pytest.param("20:00-08:00", None, id="backwards"),
        pytest.param("08:60-10:00", None, id="minute-60"),
        pytest.param("08:59-09:60", None, id="end-minute-60"),
        pytest.param("08:00-24:01", None, id="past-24-00"),
        pytest.param("08:00-24:30", None, id="24-30"),
        pytest.param("08:00-25:00", None, id="hour-25"),
        pytest.param("8-20", None, id="no-minutes"),
        pytest.param("08:0-20:00", None, id="one-digit-minute"),
        pytest.param("08:000-20:00", None, id="three-digit-minute"),
        pytest.param("xx:00-20:00", None, id="hour-not-a-number"),
        pytest.param("08:xx-20:00", None, id="minute-not-a-number"),
        pytest.param("08:00", None, id="no-end"),
        pytest.param("", None, id="empty"),
    ],
)
def test_parse_window_table(text: str, window: tuple[int, int] | None) -> None:
    assert parse_window(text) == window


@pytest.mark.parametrize(
    ("window", "text"),
    [
        pytest.param(None, "closed", id="closed"),
        pytest.param((480, 1200), "08:00-20:00", id="the-default"),
        pytest.param((545, 1065), "09:05-17:45", id="minutes"),
        pytest.param((0, 1440), "00:00-24:00", id="the-whole-day"),
    ],
)
def test_format_window(window: tuple[int, int] | None, text: str) -> None:
    assert format_window(window) == text


def test_the_builtin_rules_allow_08_to_20_every_day_and_holidays() -> None:
    assert DayRule() == DayRule(
        weekdays=(480, 1200),
        saturday=(480, 1200),
        sunday=(480, 1200),
        closed_on_holidays=False,
        name="default",
    )
    assert CallingRules() == CallingRules(
        version="builtin", default=DayRule(), countries={}, regions={}
    )
    assert CallingRules().rule_for("US", "US-LA") == DayRule()


def test_warming_loads_the_holiday_tables_of_the_jurisdictions_that_close_on_holidays() -> None:
    closed, open_ = DayRule(closed_on_holidays=True), DayRule()
    rules = CallingRules(
        countries={"de": closed, "FR": open_},
        regions={"US-LA": closed, "us-ca": closed, "US-TX": open_},
    )
    calling_window._holidays.cache_clear()
    loaded = calling_window.warm_holidays(rules, [2026, 2027])
    assert loaded == [
        ("DE", "", 2026),
        ("US", "US-CA", 2026),
        ("US", "US-LA", 2026),
        ("DE", "", 2027),
        ("US", "US-CA", 2027),
        ("US", "US-LA", 2027),
    ]
    assert calling_window._holidays.cache_info().currsize == 6
    # What the alerts look up afterwards is there already: no miss.
    misses = calling_window._holidays.cache_info().misses
    assert calling_window.holiday_name(date(2026, 12, 25), "us", "us-la") == "Christmas Day"
    assert calling_window._holidays.cache_info().misses == misses
    assert calling_window.warm_holidays(CallingRules(), [2026]) == []
