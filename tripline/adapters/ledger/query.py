"""What a ledger question asks (filters, period, page), the same for every store."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from tripline.adapters.store import iso

MAX_PAGE = 1000


@dataclass(frozen=True, slots=True, kw_only=True)
class LedgerQuery:
    """Entries matching every filter set, oldest first, after `after` (a page's cursor)."""

    customer_id: str = ""
    phone_hash: str = ""
    idempotency_key: str = ""
    outcome: str = ""
    kind: str = ""
    start: str = ""
    """ISO-8601 UTC, inclusive ('' for no bound)."""
    end: str = ""
    """ISO-8601 UTC, exclusive ('' for no bound)."""
    after: tuple[str, str, str] | None = None
    """The last entry of the previous page: (at, source, streamId)."""
    limit: int = 100


def order_key(entry: dict[str, Any]) -> tuple[str, str, str]:
    """Every store's order: time, then deployment, then stream id (one total order)."""
    # Stream ids compare as text: their millisecond part has 13 digits until the year 2286.
    return (str(entry["at"]), str(entry["source"]), str(entry["streamId"]))


def parse_instant(value: str) -> str:
    """An instant as entries store it (UTC, milliseconds).

    Accepted: ISO-8601 with an offset, or a date (its midnight UTC).

    Raises:
        ValueError: anything else — a time without an offset too: which zone it meant is a
            guess, and an audit's period must not be one.
    """
    text = value.strip()
    try:
        if len(text) == 10:
            day = dt.date.fromisoformat(text)
            stamp = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
        else:
            stamp = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        msg = f"not an ISO-8601 date or time: {value[:40]!r}"
        raise ValueError(msg) from exc
    if stamp.tzinfo is None:
        msg = f"a time needs its UTC offset (Z or +hh:mm): {value[:40]!r}"
        raise ValueError(msg)
    return iso(stamp.timestamp())


def encode_cursor(entry: dict[str, Any]) -> str:
    """The opaque cursor that continues after `entry`."""
    raw = orjson.dumps([entry["at"], entry["source"], entry["streamId"]])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, str, str]:
    """The (at, source, streamId) a cursor names.

    Raises:
        ValueError: the cursor was not made by encode_cursor.
    """
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, source, stream_id = orjson.loads(raw)
    except (binascii.Error, orjson.JSONDecodeError, ValueError, TypeError) as exc:
        msg = "invalid cursor"
        raise ValueError(msg) from exc
    if not all(isinstance(v, str) for v in (at, source, stream_id)):
        msg = "invalid cursor"
        raise ValueError(msg)
    return at, source, stream_id


def matches(entry: dict[str, Any], q: LedgerQuery) -> bool:
    """Whether an entry answers the query's filters and period (not its page)."""
    checks = (
        (q.customer_id, "customerId"),
        (q.phone_hash, "phoneHash"),
        (q.idempotency_key, "idempotencyKey"),
        (q.outcome, "outcome"),
        (q.kind, "kind"),
    )
    if any(want and entry.get(name) != want for want, name in checks):
        return False
    at = str(entry["at"])
    return (not q.start or at >= q.start) and (not q.end or at < q.end)


class LedgerStore(Protocol):
    """Where the ledger keeps its entries."""

    def write(self, entries: list[dict[str, Any]]) -> int:
        """Keep entries durably (a replayed entry is not kept twice); how many were new."""

    def query(self, q: LedgerQuery) -> list[dict[str, Any]]:
        """One page of entries answering `q`, in order_key order."""

    def export(self, start: str, end: str) -> Iterator[dict[str, Any]]:
        """Every entry of [start, end), in order_key order."""

    def purge(self, before: str) -> int:
        """Delete entries older than `before` (retention); how many."""

    def erase(self, *, customer_id: str = "", phone_hash: str = "") -> int:
        """Delete a customer's (or a number's) entries; how many (none without a filter)."""

    def close(self) -> None:
        """Release connections and files."""
