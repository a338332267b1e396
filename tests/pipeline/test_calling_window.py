"""Calling windows across every IANA zone and the DST transitions of 2024-2027."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import available_timezones

import pendulum
from hypothesis import given, settings
from hypothesis import strategies as st

from conf.rules import load_rules
from messages import Customer, Reason
from pipeline.calling_window import day_status, inside, parse_window
from pipeline.comply import Allowed, ComplyRules, comply

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
