"""Calling windows as data: per-country and per-region hours, Sundays and legal holidays."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date

import holidays
import pendulum

CallingHours = tuple[int, int]
"""Minutes after local midnight: [start, end)."""

_SATURDAY, _SUNDAY = 5, 6  # pendulum: Monday is 0
_SEARCH_DAYS = 14  # a rule set that allows no day within two weeks is a configuration error


@dataclass(frozen=True, slots=True, kw_only=True)
class DayRule:
    """When calls may start, for one jurisdiction."""

    weekdays: CallingHours = (8 * 60, 20 * 60)
    """Monday to Friday."""
    saturday: CallingHours | None = (8 * 60, 20 * 60)
    """None: no calls on Saturdays."""
    sunday: CallingHours | None = (8 * 60, 20 * 60)
    """None: no calls on Sundays."""
    closed_on_holidays: bool = False
    """No calls on the jurisdiction's legal holidays (state holidays included)."""
    name: str = "default"
    """Which rule this is, as the record shows it ('default', 'US', 'US-LA')."""

    def window(self, weekday: int) -> CallingHours | None:
        """The window of a weekday (pendulum numbering), None when closed."""
        if weekday == _SATURDAY:
            return self.saturday
        if weekday == _SUNDAY:
            return self.sunday
        return self.weekdays


@dataclass(frozen=True, slots=True, kw_only=True)
class CallingRules:
    """The versioned rule set: a default, per-country and per-region (ISO 3166-2) overrides."""

    version: str = "builtin"
    default: DayRule = field(default_factory=DayRule)
    countries: dict[str, DayRule] = field(default_factory=dict)
    regions: dict[str, DayRule] = field(default_factory=dict)

    def rule_for(self, country: str, region: str) -> DayRule:
        """The most specific rule: region ('US-LA'), then country ('US'), then the default."""
        key = f"{country}-{region}" if region and "-" not in region else region
        return self.regions.get(key) or self.countries.get(country) or self.default


@functools.lru_cache(maxsize=512)
def _holidays(country: str, region: str, year: int) -> holidays.HolidayBase | None:
    subdiv = region.split("-", 1)[-1] if region else None
    try:
        return holidays.country_holidays(country, subdiv=subdiv, years=year)
    except NotImplementedError:  # unknown country or subdivision: no holiday data
        try:
            return holidays.country_holidays(country, years=year)
        except NotImplementedError:
            return None


def warm_holidays(rules: CallingRules, years: Iterable[int]) -> list[tuple[str, str, int]]:
    """Load the holiday tables of the jurisdictions the rules close on holidays; which ones.

    The first lookup loads the holidays library's registry (~80 ms measured) and each country's
    table: otherwise on the way of the first alert that needs it, a critical one too.
    """
    places = {
        (key.partition("-")[0].upper(), key.upper())
        for key, rule in rules.regions.items()
        if rule.closed_on_holidays
    }
    places |= {
        (key.upper(), "") for key, rule in rules.countries.items() if rule.closed_on_holidays
    }
    loaded = [(country, region, year) for year in years for country, region in sorted(places)]
    for country, region, year in loaded:
        _holidays(country, region, year)
    return loaded


def holiday_name(day: date, country: str, region: str) -> str | None:
    """The legal holiday on `day` in that jurisdiction (observed dates included), if any."""
    if not country:
        return None
    table = _holidays(country.upper(), region.upper(), day.year)
    return None if table is None else table.get(day)


@dataclass(frozen=True, slots=True)
class DayStatus:
    """Whether calls may start on one local day, and why not."""

    window: CallingHours | None
    closed_by: str = ""
    """'sunday', 'saturday' or 'holiday:<name>' when closed."""


def day_status(local: pendulum.DateTime, rule: DayRule, country: str, region: str) -> DayStatus:
    """The calling window of `local`'s day under `rule`."""
    return _day_status(local.date(), rule, country, region)


@functools.lru_cache(maxsize=4096)
def _day_status(day: date, rule: DayRule, country: str, region: str) -> DayStatus:
    # Asked for every alert, twice; the answer changes once a day (the holiday lookup is most
    # of the compliance step once the time conversion is cached).
    weekday = day.weekday()  # Monday is 0, as in pendulum
    window = rule.window(weekday)
    if window is None:
        return DayStatus(None, "sunday" if weekday == _SUNDAY else "saturday")
    if rule.closed_on_holidays:
        name = holiday_name(day, country, region)
        if name:
            return DayStatus(None, f"holiday:{name}")
    return DayStatus(window)


def inside(local: pendulum.DateTime, window: CallingHours) -> bool:
    """Whether a call may start at `local` within `window`."""
    minute = local.hour * 60 + local.minute
    return window[0] <= minute < window[1]


def next_window_start(
    local: pendulum.DateTime, rule: DayRule, country: str, region: str
) -> pendulum.DateTime:
    """The next local moment a call may start: later today, or the next open day.

    Raises:
        ValueError: when no day within two weeks allows calls (a broken rule set).
    """
    for offset in range(_SEARCH_DAYS + 1):
        day = local.add(days=offset).start_of("day") if offset else local
        status = day_status(day, rule, country, region)
        if status.window is None:
            continue
        start = _at_minute(day, status.window[0])
        if offset == 0 and start <= local:
            if inside(local, status.window):
                return local
            continue
        return start
    msg = f"rule {rule.name} allows no call within {_SEARCH_DAYS} days"
    raise ValueError(msg)


def next_business_day(
    local: pendulum.DateTime, hour: int, country: str, region: str
) -> pendulum.DateTime:
    """`hour` o'clock on the next weekday that is not a legal holiday."""
    day = local.add(days=1)
    for _ in range(_SEARCH_DAYS):
        if day.day_of_week < _SATURDAY and not holiday_name(day.date(), country, region):
            break
        day = day.add(days=1)
    return day.set(hour=hour, minute=0, second=0, microsecond=0)


def _at_minute(day: pendulum.DateTime, minute: int) -> pendulum.DateTime:
    """Wall-clock `minute` after midnight on `day` (pendulum moves a time DST skips forward)."""
    if minute >= 24 * 60:
        return day.end_of("day")
    return day.set(hour=minute // 60, minute=minute % 60, second=0, microsecond=0)


def parse_window(text: str) -> CallingHours | None:
    """'08:00-20:00' → (480, 1200); None when malformed or empty."""
    start, _, end = text.partition("-")
    a, b = _minutes(start), _minutes(end)
    if a is None or b is None or a >= b:
        return None
    return a, b


def _minutes(hhmm: str) -> int | None:
    hours, _, minutes = hhmm.strip().partition(":")
    if not (hours.isdigit() and minutes.isdigit() and len(minutes) == 2):
        return None
    value = int(hours) * 60 + int(minutes)
    return value if value <= 24 * 60 and int(minutes) < 60 else None


def format_window(window: CallingHours | None) -> str:
    """(480, 1200) → '08:00-20:00'; None → 'closed'."""
    if window is None:
        return "closed"
    return "-".join(f"{m // 60:02d}:{m % 60:02d}" for m in window)
