"""The calling-rules data file: loaded and checked with every problem reported at once."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from tripline.conf.schema import ConfigError
from tripline.pipeline.calling_window import CallingHours, CallingRules, DayRule, parse_window

_KEYS = {"weekdays", "saturday", "sunday", "holidays"}


def load_rules(path: str | Path | None = None) -> CallingRules:
    """Load the calling rules from `path`, or the shipped conf/calling-rules.toml.

    Raises:
        ConfigError: listing every problem in the file.
    """
    try:
        if path:
            text = Path(path).read_text("utf-8")
        else:
            text = (
                resources.files("tripline.conf").joinpath("calling-rules.toml").read_text("utf-8")
            )
        data = tomllib.loads(text)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError([f"calling rules {path or 'builtin'}: {exc}"]) from exc
    problems: list[str] = []
    version = data.get("version")
    if not isinstance(version, str) or not version:
        problems.append("calling rules: version must be a non-empty string")
    unknown = set(data) - {"version", "default", "countries", "regions"}
    problems.extend(f"calling rules: unknown section [{name}]" for name in sorted(unknown))
    default = _rule("default", data.get("default", {}), problems)
    countries = {
        code.upper(): _rule(code.upper(), body, problems)
        for code, body in _table(data, "countries", problems).items()
    }
    regions = {
        code.upper(): _rule(code.upper(), body, problems)
        for code, body in _table(data, "regions", problems).items()
    }
    if problems:
        raise ConfigError(problems)
    return CallingRules(version=str(version), default=default, countries=countries, regions=regions)


def _table(data: dict[str, Any], name: str, problems: list[str]) -> dict[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, dict):
        problems.append(f"calling rules: [{name}] must be a table")
        return {}
    return value


def _rule(name: str, body: Any, problems: list[str]) -> DayRule:  # noqa: ANN401
    if not isinstance(body, dict):
        problems.append(f"calling rules: {name} must be a table")
        return DayRule(name=name)
    problems.extend(
        f"calling rules: {name}.{key}: unknown key" for key in sorted(set(body) - _KEYS)
    )
    weekdays = _window(
        name, "weekdays", body.get("weekdays", "08:00-20:00"), problems, closable=False
    )
    holidays = body.get("holidays", "open")
    if holidays not in ("open", "closed"):
        problems.append(f"calling rules: {name}.holidays: must be 'open' or 'closed'")
    return DayRule(
        name=name,
        weekdays=weekdays or (8 * 60, 20 * 60),
        saturday=_window(name, "saturday", body.get("saturday", "08:00-20:00"), problems),
        sunday=_window(name, "sunday", body.get("sunday", "08:00-20:00"), problems),
        closed_on_holidays=holidays == "closed",
    )


def _window(
    name: str,
    key: str,
    value: Any,  # noqa: ANN401 - raw TOML
    problems: list[str],
    *,
    closable: bool = True,
) -> CallingHours | None:
    if closable and value == "closed":
        return None
    window = parse_window(value) if isinstance(value, str) else None
    if window is None:
        allowed = "'HH:MM-HH:MM' or 'closed'" if closable else "'HH:MM-HH:MM'"
        problems.append(f"calling rules: {name}.{key}: must be {allowed} (got {value!r})")
    return window
