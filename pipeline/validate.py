"""Validation of an alert payload: bytes in, an Alert or one problem per field out."""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from tripline.messages import Alert, Priority, Reason
from tripline.pipeline.prioritise import PriorityRules, prioritise

ID_PATTERN = re.compile(
    r"^[\x21-\x7e]+$"
)  # printable ASCII, no spaces: ids travel in URLs and Redis keys
TYPE_PATTERN = re.compile(r"^[A-Za-z0-9_.:-]+$")
# Refused in every string, ids and free text alike: C0 controls, DEL and C1 controls, and the
# invisible formatting characters that reorder or hide text on an agent's screen (bidi
# embeddings, overrides and isolates, directional and zero-width marks, line and paragraph
# separators, the BOM, interlinear annotation). A unit of "\u202ec°" would show reversed.
_INVISIBLE = "\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ufff9-\ufffb"
UNSAFE_CHARACTERS = re.compile(f"[\\x00-\\x1f\\x7f-\\x9f{_INVISIBLE}]")
# What an ISO-8601 time can hold: fromisoformat() overlooks some others (a trailing NUL).
_ISO_CHARACTERS = re.compile(r"[0-9TWZtwz:.,+\- ]+")
_UNIT_MAX = 32
# Patterns whose every match is printable ASCII without spaces: no match is blank or holds an
# UNSAFE_CHARACTERS character (FieldChecker.string's shortcut rests on it; a test checks it).
_PRINTABLE_ASCII = (ID_PATTERN, TYPE_PATTERN)
_SEVERITY_MAX = 32


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with one field."""

    field: str
    """Dotted path of the field, e.g. telemetryData.currentValue ('' for the whole body)."""
    reason: Reason
    """missing_field, invalid_field, invalid_json or too_large."""
    message: str
    """What is wrong, for a person."""

    def as_json(self) -> dict[str, str]:
        """The problem as it appears in a 400 body or on the rejected topic."""
        return {"field": self.field, "reason": self.reason.value, "message": self.message}


@dataclass(frozen=True, slots=True)
class Rejected:
    """The payload is not an alert; every problem found is listed."""

    problems: tuple[Problem, ...]
    """At least one."""
    idempotency_key: str = ""
    """The key, when one could be read (helps the sender correlate)."""

    @property
    def reason(self) -> Reason:
        """The record's reason: the first problem's."""
        return self.problems[0].reason


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """What validate needs from the config."""

    max_body_bytes: int = 65536
    max_string_length: int = 128
    max_future_skew_seconds: float = 300.0
    max_age_seconds: float = 86400.0
    max_depth: int = 32
    """Nesting of arrays and objects; orjson reads 1,024 levels but writes only 254, and a
    document stored as context must be written again."""


def validate(
    body: bytes,
    *,
    now: float,
    limits: Limits,
    retained: bool = False,
    rules: PriorityRules | None = None,
) -> tuple[Alert, dict[str, Any]] | Rejected:
    """Decode and check one payload.

    Args:
        body: the raw payload (MQTT message or HTTP body).
        now: the current time, epoch seconds.
        limits: size and clock-skew limits.
        retained: whether the MQTT message was retained (a replay).
        rules: when given, the alert carries the priority prioritise() gives it under them
            (built once: a copy with its priority costs as much as validating, ~5 µs); else
            Priority.NORMAL.

    Returns:
        The alert plus the decoded document (stored as the context), or every problem.
    """
    if len(body) > limits.max_body_bytes:
        return Rejected(
            (
                Problem(
                    "",
                    Reason.TOO_LARGE,
                    f"body is {len(body)} bytes, limit {limits.max_body_bytes}",
                ),
            )
        )
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return Rejected((Problem("", Reason.INVALID_JSON, f"not JSON: {exc}"),))
    if not isinstance(doc, dict):
        return Rejected((Problem("", Reason.INVALID_JSON, "must be a JSON object"),))
    if _deeper_than(body, doc, limits.max_depth):
        key = doc.get("idempotencyKey")
        return Rejected(
            (Problem("", Reason.INVALID_FIELD, f"nested deeper than {limits.max_depth} levels"),),
            key
            if isinstance(key, str)
            and ID_PATTERN.fullmatch(key)
            and len(key) <= limits.max_string_length
            else "",
        )
    problems: list[Problem] = []
    if not body.isascii() or b"\\u" in body or b"\x7f" in body:  # else nothing to look for
        problems += _hidden_text(doc)
    check = FieldChecker(doc, problems, limits.max_string_length)
    key = check.string("idempotencyKey", ID_PATTERN)
    sensor = check.string("sensorId", ID_PATTERN)
    customer = check.string("customerId", ID_PATTERN)
    alert_type = check.string("alertType", TYPE_PATTERN, max_len=64)
    stamp = check.timestamp(
        "timestamp",
        now + limits.max_future_skew_seconds,
        earliest=now - limits.max_age_seconds,
    )
    status = check.choice("status", ("firing", "resolved"), default="firing")
    severity = check.optional_string("severity", TYPE_PATTERN, _SEVERITY_MAX)
    telemetry = doc.get("telemetryData")
    value = threshold = math.nan
    unit = ""
    if telemetry is None:
        problems.append(Problem("telemetryData", Reason.MISSING_FIELD, "required"))
    elif not isinstance(telemetry, dict):
        problems.append(Problem("telemetryData", Reason.INVALID_FIELD, "must be an object"))
    else:
        sub = FieldChecker(telemetry, problems, limits.max_string_length, prefix="telemetryData.")
        value = sub.number("currentValue")
        threshold = sub.number("threshold")
        unit = sub.string("unit", None, max_len=_UNIT_MAX)
    if problems:
        return Rejected(tuple(problems), key if isinstance(key, str) else "")
    alert = Alert(
        idempotency_key=key,
        sensor_id=sensor,
        customer_id=customer,
        alert_type=alert_type,
        timestamp=stamp,
        firing=status == "firing",
        severity=severity,
        current_value=value,
        threshold=threshold,
        unit=unit,
        reference_id=reference_id(key),
        telemetry_hash=telemetry_hash(telemetry),
        accepted_at=now,
        retained=retained,
        priority=Priority.NORMAL if rules is None else prioritise(alert_type, severity, rules),
    )
    return alert, doc


def reference_id(idempotency_key: str) -> str:
    """Derive the context reference from the key, so a re-delivery maps to the same context."""
    return "ref_" + hashlib.blake2b(idempotency_key.encode(), digest_size=10).hexdigest()


def telemetry_hash(telemetry: Any) -> str:  # noqa: ANN401
    """Fingerprint the telemetry (sorted keys, so field order does not matter)."""
    canonical = orjson.dumps(telemetry, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()[:16]


class FieldChecker:
    """Reads fields of one object, appending a Problem per bad field."""

    def __init__(
        self, doc: dict[str, Any], problems: list[Problem], max_len: int, prefix: str = ""
    ) -> None:
        """Check fields of `doc`, appending to `problems`; `prefix` dots nested field names."""
        self.doc, self.problems, self.max_len, self.prefix = doc, problems, max_len, prefix

    def _bad(self, name: str, message: str, reason: Reason = Reason.INVALID_FIELD) -> None:
        self.problems.append(Problem(self.prefix + name, reason, message))

    def string(self, name: str, pattern: re.Pattern[str] | None, max_len: int = 0) -> str:
        """A required non-empty string; '' when missing or bad (and a problem noted)."""
        value = self.doc.get(name)
        if value is None:
            self._bad(name, "required", Reason.MISSING_FIELD)
            return ""
        max_len = max_len or self.max_len
        if (
            pattern in _PRINTABLE_ASCII
            and value.__class__ is str
            and len(value) <= max_len
            and pattern.fullmatch(value)
        ):
            # What these patterns match is neither blank nor unsafe: the checks of
            # _string_value all pass, and the usual id costs one match instead of five steps.
            return value
        return self._string_value(name, value, pattern, max_len)

    def optional_string(self, name: str, pattern: re.Pattern[str], max_len: int) -> str:
        """A string that may be absent ('' then); checked like `string` when present."""
        value = self.doc.get(name)
        return "" if value is None else self._string_value(name, value, pattern, max_len)

    def _string_value(
        self, name: str, value: object, pattern: re.Pattern[str] | None, max_len: int
    ) -> str:
        if not isinstance(value, str):
            self._bad(name, f"must be a string, got {type(value).__name__}")
        elif not value.strip():
            self._bad(name, "must not be empty")
        elif len(value) > max_len:
            self._bad(name, f"longer than {max_len} characters")
        elif pattern is not None and not pattern.fullmatch(value):
            self._bad(name, f"must match {pattern.pattern}")
        elif UNSAFE_CHARACTERS.search(value):
            self._bad(name, "must not contain control or invisible formatting characters")
        else:
            return value
        return ""

    def number(self, name: str) -> float:
        """A required finite number; NaN when missing or bad."""
        value = self.doc.get(name)
        if value is None:
            self._bad(name, "required", Reason.MISSING_FIELD)
        elif isinstance(value, bool) or not isinstance(value, int | float):
            self._bad(name, f"must be a number, got {type(value).__name__}")
        elif not math.isfinite(value) or abs(value) > 1e15:
            self._bad(name, "must be a finite number")
        else:
            return float(value)
        return math.nan

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        """One of `choices`, `default` when absent."""
        value = self.doc.get(name, default)
        if value not in choices:
            self._bad(name, f"must be one of {', '.join(choices)}")
            return default
        return str(value)

    def timestamp(self, name: str, latest: float, *, earliest: float = 0.0) -> float:
        """A required ISO-8601 time with a UTC offset in [earliest, latest]; epoch seconds or 0.

        Bounded on both sides, so every accepted time is one that records can write and read
        back (year 1 at +14:00 was year 0 in UTC, which no ISO reader takes).
        """
        value = self.doc.get(name)
        if value is None:
            self._bad(name, "required", Reason.MISSING_FIELD)
            return 0.0
        epoch = _epoch(value)
        if isinstance(epoch, str):
            self._bad(name, epoch)
            return 0.0
        if epoch > latest:
            self._bad(name, "lies in the future")
            return 0.0
        if epoch < earliest:
            self._bad(
                name, "is older than validate.max_age_seconds" if earliest else "lies before 1970"
            )
            return 0.0
        return epoch


def _epoch(value: object) -> float | str:
    """An ISO-8601 time with a UTC offset as epoch seconds, or what is wrong with it."""
    if not isinstance(value, str) or len(value) > 40:
        return "must be an ISO-8601 string"
    # Alerts raised together carry the same time when it is written to the second (a storm, a
    # backlog): the last answer is kept (a tuple, replaced whole: threads read it safely). A
    # parse costs ~8,500 instructions, a hit ~100; a bounded LRU cost more than it saved on
    # times that never repeat (milliseconds), one entry costs them a comparison.
    last = _last_epoch[0]
    if value == last[0]:
        return last[1]
    epoch = _parse_epoch(value)
    _last_epoch[0] = (value, epoch)
    return epoch


_last_epoch: list[tuple[str, float | str]] = [("", "must be an ISO-8601 string")]


def _parse_epoch(value: str) -> float | str:
    if not _ISO_CHARACTERS.fullmatch(value):
        return "must be an ISO-8601 string"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return "must be an ISO-8601 timestamp, e.g. 2024-05-13T14:32:00Z"
    # pendulum.parse silently reads a naive time as UTC; a sensor's local time would then be
    # off by hours and break the calling-window check, so refuse it.
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        return "must carry a UTC offset (Z or +hh:mm)"
    try:
        return parsed.timestamp()
    except (OverflowError, ValueError):  # e.g. year 1 at +14:00 is before year 1 in UTC
        return "is too old (validate.max_age_seconds)"


# In members beyond the guide's fields (kept in the context, shown to the agent): the same
# characters as UNSAFE_CHARACTERS but tab, newline and carriage return, which free text may hold.
_HIDDEN_IN_EXTRAS = re.compile(f"[\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\x9f{_INVISIBLE}]")
_GUIDE_FIELDS = frozenset(
    ("idempotencyKey", "sensorId", "customerId", "alertType", "timestamp", "status", "severity")
)
_TELEMETRY_FIELDS = frozenset(("currentValue", "threshold", "unit"))


def _hidden_text(doc: dict[str, Any]) -> list[Problem]:
    """A problem per member whose names or strings hold characters that hide or reorder text.

    The guide's own string fields are checked one by one (FieldChecker); this covers what
    else the document carries, names included, at any depth.
    """
    roots = [(name, value) for name, value in doc.items() if name not in _GUIDE_FIELDS]
    telemetry = doc.get("telemetryData")
    if isinstance(telemetry, dict):
        roots = [(n, v) for n, v in roots if n != "telemetryData"]
        roots += [
            (f"telemetryData.{name}", value)
            for name, value in telemetry.items()
            if name not in _TELEMETRY_FIELDS
        ]
    problems = []
    for name, value in roots:
        stack: list[Any] = [name, value]
        while stack:
            item = stack.pop()
            if isinstance(item, str):
                if _HIDDEN_IN_EXTRAS.search(item):
                    shown = name.encode("ascii", "backslashreplace").decode()[:64]
                    message = "must not contain control or invisible formatting characters"
                    problems.append(Problem(shown, Reason.INVALID_FIELD, message))
                    break
            elif isinstance(item, dict):
                stack.extend(item.keys())
                stack.extend(item.values())
            elif isinstance(item, list):
                stack.extend(item)
    return problems


def _deeper_than(body: bytes, doc: dict[str, Any], limit: int) -> bool:
    """Whether arrays and objects nest deeper than `limit` (the document itself is level 1)."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False  # the usual alert: too few brackets to nest that deep, nothing to walk
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > limit:
            return True
        children = value.values() if isinstance(value, dict) else value
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False
