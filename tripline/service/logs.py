"""Structured JSON logs with personal data masked.

One JSON object per line: `ts`, `level`, `logger`, `msg`, and whatever the call put in
`extra` (a decision carries `decision`: key, sensor, customer, outcome, reason, detail). Phone
numbers and names never reach a log line whole, whoever wrote the message.
"""

from __future__ import annotations

import functools
import logging
import queue
import re
import sys
import threading
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


_BATCH = 1_000  # lines formatted and written per write, at most
_MOST_WAITING = 100_000  # lines queued for the writer beyond which new ones are dropped (counted)


class WriterHandler(logging.Handler):
    """Hands records to a thread of its own that formats them and writes each batch at once.

    Written by the thread that logged, one line per decision cost a write system call each,
    and with it the interpreter lock given up and waited for again behind the busy threads: in
    the 50,000-sensor storm's profile, 38 % of the dialer loop's time went to logging its
    deferrals. A thread that logs now only queues the record (its message is built there, so an
    argument changed afterwards cannot change the line); the writer formats what queued
    meanwhile and writes it in one call. Lines keep the order they were queued in. What is
    queued is written at exit (logging's shutdown closes the handler); a process killed with
    SIGKILL loses the lines of its last moments — the decisions themselves are in Redis. If the
    stream stops taking lines (a blocked pipe), past `_MOST_WAITING` new ones are dropped and
    counted, and the count is written once it takes lines again, instead of the service's
    memory growing or its threads stopping.
    """

    def __init__(self, stream: Any, formatter: logging.Formatter) -> None:  # noqa: ANN401 - a text stream
        """Start the writer thread for `stream`."""
        super().__init__()
        self.setFormatter(formatter)
        self._stream = stream
        self._queue: queue.SimpleQueue[logging.LogRecord | None] = queue.SimpleQueue()
        self._dropped = 0
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)
        self._thread.start()

    def handle(self, record: logging.LogRecord) -> bool:
        """Queue `record` if the filters pass it (no handler lock: the queue is thread-safe)."""
        if not self.filter(record):
            return False
        self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        """Queue the record for the writer, its message built now (written at once if closed)."""
        if self._closed:  # a thread still logging at exit: its line is not lost
            try:
                self._write([self.format(record)])
            except Exception:
                self.handleError(record)
            return
        if self._queue.qsize() >= _MOST_WAITING:
            self._dropped += 1
            return
        try:
            record.msg, record.args = record.getMessage(), None
        except Exception:  # a message whose arguments do not fit it: logging's own report
            self.handleError(record)
            return
        self._queue.put(record)

    def close(self) -> None:
        """Write what is queued, then stop the writer (bounded: at exit nothing hangs on it)."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join(timeout=5.0)
        super().close()

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < _BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            lines = []
            for record in batch:
                if record is None:
                    continue
                try:
                    lines.append(self.format(record))
                except Exception:
                    self.handleError(record)
            if self._dropped:
                dropped, self._dropped = self._dropped, 0  # a count lost in a race errs low
                lines.append(self._dropped_line(dropped))
            self._write(lines)
            if None in batch:
                return

    def _dropped_line(self, dropped: int) -> str:
        record = logging.LogRecord(
            "tripline.logs",
            logging.WARNING,
            "",
            0,
            f"{dropped} log lines dropped: the log stream did not take them",
            None,
            None,
        )
        return self.format(record)

    def _write(self, lines: list[str]) -> None:
        if not lines:
            return
        try:
            self._stream.write("\n".join(lines) + "\n")
            self._stream.flush()
        except Exception:  # noqa: S110 - a closed or broken stream: nowhere left to say so
            pass


def configure(level: str, fmt: str) -> None:
    """Install the root handler: `fmt` is 'json' (services, containers) or 'text' (a terminal)."""
    handler = WriterHandler(
        sys.stderr,
        JsonFormatter()
        if fmt == "json"
        else MaskingFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"),
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
