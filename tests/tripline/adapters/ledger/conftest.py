"""Fixtures of the ledger's tests: a PostgreSQL database of the test's own, entries."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tripline.adapters.ledger.entry import ENTRY_FIELDS

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A database created for this test on the machine's PostgreSQL, dropped after it."""
    name = f"tl_ledger_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"'.encode())
    yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


def entry(n: int, *, at: str = "", **fields: Any) -> dict[str, Any]:
    """A decision entry numbered n (stream id n-0), at `at` or second n of 2026-11-27."""
    out: dict[str, Any] = dict.fromkeys(ENTRY_FIELDS)
    out.update(
        source="tl",
        streamId=f"{1_795_000_000_000 + n}-0",
        kind="decision",
        at=at or f"2026-11-27T10:{n // 60 % 60:02d}:{n % 60:02d}.000Z",
        idempotencyKey=f"K-{n}",
        customerId=f"C-{n % 3}",
        outcome="called" if n % 2 else "deferred",
        reason=None if n % 2 else "outside_calling_window",
        evidence={"facts": {"localTime": "2026-11-27T05:00:00-05:00", "n": n}, "z": [1, 2]},
    )
    out.update(fields)
    return out
