"""The ledger in PostgreSQL (psycopg 3): versioned migrations, idempotent batch inserts, queries."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Iterator
from importlib import resources
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from tripline.adapters.ledger.entry import ENTRY_FIELDS
from tripline.adapters.ledger.query import LedgerQuery

log = logging.getLogger("tripline.ledger")

# Entry field -> column, in ENTRY_FIELDS order.
_COLUMNS = {
    name: "".join("_" + c.lower() if c.isupper() else c for c in name) for name in ENTRY_FIELDS
}
_INSERT = (
    f"INSERT INTO ledger_entries ({', '.join(_COLUMNS.values())}) "  # noqa: S608 - fixed names
    f"VALUES ({', '.join(['%s'] * len(_COLUMNS))}) "
    "ON CONFLICT (source, stream_id) DO NOTHING"
)
_SELECT = f"SELECT {', '.join(_COLUMNS.values())} FROM ledger_entries"  # noqa: S608
_ORDER = " ORDER BY at, source, stream_id"
_LOCK_ID = 0x7472_6970  # 'trip': one `ledger migrate` at a time per database


def migrations() -> list[tuple[int, str, str]]:
    """The schema's versions: (number, file name, SQL), in order."""
    found = []
    for item in resources.files("tripline.adapters.ledger.migrations").iterdir():
        name = item.name
        if name.endswith(".sql") and name[:4].isdigit():
            found.append((int(name[:4]), name, item.read_text("utf-8")))
    return sorted(found)


def migrate(url: str) -> list[str]:
    """Apply the migrations the database lacks, each in its own transaction; their names.

    Safe to run again and from several hosts at once (an advisory lock serialises them).
    """
    applied: list[str] = []
    with psycopg.connect(url) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_ID,))
        try:
            with conn.transaction():
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations ("
                    " version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
                    " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
                )
            done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
            for version, name, sql in migrations():
                if version in done:
                    continue
                with conn.transaction():
                    conn.execute(sql.encode())
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                        (version, name),
                    )
                applied.append(name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))
    return applied


def pending_migrations(url: str) -> list[str]:
    """The migrations the database lacks (the writer refuses to write until there are none)."""
    with psycopg.connect(url) as conn:
        exists = conn.execute("SELECT to_regclass('schema_migrations')").fetchone()
        done: set[int] = set()
        if exists and exists[0]:
            done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
    return [name for version, name, _ in migrations() if version not in done]


class PostgresStore:
    """LedgerStore over one PostgreSQL connection (reconnected after a failure)."""

    def __init__(self, url: str) -> None:
        """Keep the URL; the connection opens on first use."""
        self._url = url
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()  # one transaction at a time on the connection

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = psycopg.connect(self._url, connect_timeout=5, autocommit=False)
        return self._conn

    def _run(self, fn: Any) -> Any:  # noqa: ANN401 - fn(conn) -> anything
        with self._lock:
            conn = self._connection()
            try:
                with conn.transaction():
                    return fn(conn)
            except psycopg.OperationalError:
                self._close()  # the next call connects again
                raise

    def write(self, entries: list[dict[str, Any]]) -> int:
        """Insert a batch in one transaction; an entry already there is skipped."""
        rows = [tuple(_param(name, e.get(name)) for name in ENTRY_FIELDS) for e in entries]

        def insert(conn: psycopg.Connection[Any]) -> int:
            with conn.cursor() as cur:
                cur.executemany(_INSERT, rows, returning=False)
                return max(cur.rowcount, 0)

        return int(self._run(insert))

    def query(self, q: LedgerQuery) -> list[dict[str, Any]]:
        """One page, oldest first."""
        where, params = _where(q)
        if q.after is not None:
            where.append("(at, source, stream_id) > (%s::timestamptz, %s, %s)")
            params += list(q.after)
        sql = _SELECT + (" WHERE " + " AND ".join(where) if where else "") + _ORDER + " LIMIT %s"

        def select(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
            return [_entry(row) for row in conn.execute(sql.encode(), [*params, q.limit])]

        return list(self._run(select))

    def export(self, start: str, end: str) -> Iterator[dict[str, Any]]:
        """Every entry of the period, streamed from a server-side cursor."""
        sql = _SELECT + " WHERE at >= %s::timestamptz AND at < %s::timestamptz" + _ORDER
        with (
            psycopg.connect(self._url, connect_timeout=5) as conn,
            conn.cursor(name="ledger_export") as cur,
        ):
            cur.execute(sql.encode(), (start, end))
            for row in cur:
                yield _entry(row)

    def purge(self, before: str) -> int:
        """Delete entries older than `before`."""

        def delete(conn: psycopg.Connection[Any]) -> int:
            cur = conn.execute("DELETE FROM ledger_entries WHERE at < %s::timestamptz", (before,))
            return cur.rowcount

        return int(self._run(delete))

    def erase(self, *, customer_id: str = "", phone_hash: str = "") -> int:
        """Delete a customer's (or a number's) entries: the right to erasure; how many."""
        if not customer_id and not phone_hash:
            return 0
        column, value = ("customer_id", customer_id) if customer_id else ("phone_hash", phone_hash)

        def delete(conn: psycopg.Connection[Any]) -> int:
            sql = f"DELETE FROM ledger_entries WHERE {column} = %s"  # noqa: S608 - fixed names
            return conn.execute(sql.encode(), (value,)).rowcount

        return int(self._run(delete))

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _where(q: LedgerQuery) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    for value, column in (
        (q.customer_id, "customer_id"),
        (q.phone_hash, "phone_hash"),
        (q.idempotency_key, "idempotency_key"),
        (q.outcome, "outcome"),
        (q.kind, "kind"),
    ):
        if value:
            where.append(f"{column} = %s")
            params.append(value)
    if q.start:
        where.append("at >= %s::timestamptz")
        params.append(q.start)
    if q.end:
        where.append("at < %s::timestamptz")
        params.append(q.end)
    return where, params


def _param(name: str, value: Any) -> Any:  # noqa: ANN401
    if name == "evidence":
        return Jsonb(value or {})
    return value


def _entry(row: tuple[Any, ...]) -> dict[str, Any]:
    out = dict(zip(ENTRY_FIELDS, row, strict=True))
    at = out["at"]
    if isinstance(at, dt.datetime):
        utc = at.astimezone(dt.UTC)
        out["at"] = utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
    return out
