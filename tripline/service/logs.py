"""Structured JSON logs with personal data masked.

One JSON object per line: `ts`, `level`, `logger`, `msg`, and whatever the call put in
`extra` (a decision carries `decision`: key, sensor, customer, outcome, reason, detail). Phone
numbers and names never reach a log line whole, whoever wrote the message.
"""

from __future__ import annotations

import functools
import logging
import re
import sys
import time
from pathlib import Path
from typing import Any

import orjson

# E.164 or formatted with a leading +: "+14155550100", "+1 (415) 555-0100".
_PHONE = re.compile(r"\+\d[\d\s().-]{5,}\d")
_NAME_FIELDS = frozenset({"name", "callbackusername", "customername", "username"})
_PHONE_FIELDS = frozenset({"phone", "number", "callbacknumbers", "phonenumber", "to", "from"})
_STANDARD = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys() | {"message", "asctime"}
)


def mask_phone(text: str) -> str:
    """Keep the country code's first digit and the last two digits: enough to correlate."""

    def hide(match: re.Match[str]) -> str:
        digits = re.sub(r"\D", "", match.group())
        return f"+{digits[0]}{'*' * max(0, len(digits) - 3)}{digits[-2:]}"

    return _PHONE.sub(hide, text)


def mask_name(text: str) -> str:
    """First letter of each word."""
    return " ".join(f"{w[0]}***" if w else w for w in text.split(" "))


def masked(value: Any, field: str = "") -> Any:  # noqa: ANN401
    """A copy of `value` with phone numbers and names hidden, recursively."""
    key = field.lower()
    if isinstance(value, dict):
        return {k: masked(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [masked(v, field) for v in value]
    if isinstance(value, str):
        if key in _NAME_FIELDS:
            return mask_name(value)
        if key in _PHONE_FIELDS and any(c.isdigit() for c in value):
            digits = re.sub(r"\D", "", value)
            return f"{'*' * max(0, len(digits) - 2)}{digits[-2:]}"
        # The pattern needs a '+': most strings (keys, reasons, ids) skip the regex.
        return mask_phone(value) if "+" in value else value
    return value


@functools.lru_cache(maxsize=64)
def _second(second: int) -> str:
    # UTC, as records show times; one strftime per second, not per line.
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line, masked."""

    def format(self, record: logging.LogRecord) -> str:
        """The JSON line."""
        doc: dict[str, Any] = {
            "ts": f"{_second(int(record.created))}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        doc.update(
            (name, value)
            for name, value in record.__dict__.items()
            if name not in _STANDARD and not name.startswith("_")
        )
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(masked(doc), default=str).decode()


class MaskingFormatter(logging.Formatter):
    """The plain text format, masked the same way (for a terminal)."""

    def format(self, record: logging.LogRecord) -> str:
        """The line, with phone numbers hidden."""
        return mask_phone(super().format(record))


def configure(level: str, fmt: str) -> None:
    """Install the root handler: `fmt` is 'json' (services, containers) or 'text' (a terminal)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter()
        if fmt == "json"
        else MaskingFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Neither format shows the caller's file and line, thread or process: not collecting them
    # per record is the logging documentation's own "Optimization" advice (one line is written
    # per decision).
    logging._srcfile = None  # noqa: SLF001
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def to_file(path: Path) -> None:
    """Send every log line to `path` instead, as JSON, at the level already set (the demo)."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(JsonFormatter())
    logging.getLogger().handlers[:] = [handler]
