"""Call caps: 'at most N calls per window', per phone number and per customer."""

from __future__ import annotations

from dataclasses import dataclass

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True, slots=True)
class Cap:
    """At most `max_calls` calls within any `window_seconds`."""

    max_calls: int
    window_seconds: int

    def __str__(self) -> str:
        """The config form, e.g. 3/86400s."""
        return f"{self.max_calls}/{self.window_seconds}s"


def parse_cap(text: str) -> Cap | None:
    """'3/24h' → Cap(3, 86400); None when malformed."""
    count, _, window = text.strip().partition("/")
    if not count.isdigit() or len(window) < 2 or window[-1] not in _UNITS:
        return None
    if not window[:-1].isdigit() or int(count) < 1 or int(window[:-1]) < 1:
        return None
    return Cap(int(count), int(window[:-1]) * _UNITS[window[-1]])


def cap_args(caps: tuple[Cap, ...], *, now: float, member: str) -> list[str | int]:
    """Arguments of the Redis cap script: now (ms), the call's id, then (max, window ms) pairs."""
    args: list[str | int] = [int(now * 1000), member, len(caps)]
    for cap in caps:
        args += [cap.max_calls, cap.window_seconds * 1000]
    return args


@dataclass(frozen=True, slots=True)
class CapRules:
    """The [comply] caps: per phone number and per customer, each over several windows."""

    number: tuple[Cap, ...] = ()
    customer: tuple[Cap, ...] = ()
