"""Both stores answer alike: idempotent writes, pages, byte-identical exports, retention."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.tripline.adapters.ledger.conftest import entry
from tripline.adapters.ledger import postgres
from tripline.adapters.ledger.entry import export_line
from tripline.adapters.ledger.ndjson import FileStore
from tripline.adapters.ledger.postgres import PostgresStore
from tripline.adapters.ledger.query import LedgerQuery, LedgerStore, encode_cursor


@pytest.fixture(params=["postgresql", "ndjson"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LedgerStore]:
    if request.param == "postgresql":
        url = request.getfixturevalue("pg_url")
        postgres.migrate(url)
        s: LedgerStore = PostgresStore(url)
    else:
        s = FileStore(tmp_path / "ledger", max_bytes=4096)
    yield s
    s.close()


def _export(store: LedgerStore, start: str, end: str) -> bytes:
    return b"".join(export_line(e) for e in store.export(start, end))


def test_a_replayed_batch_is_kept_once(store: LedgerStore) -> None:
    batch = [entry(n) for n in range(1, 41)]
    store.write(batch)
    store.write(batch[10:20])  # a writer crashed after writing, before acknowledging
    got = store.query(LedgerQuery(limit=1000))
    assert [e["streamId"] for e in got] == [e["streamId"] for e in batch]


def test_pages_follow_each_other_without_gap_or_repeat(store: LedgerStore) -> None:
    store.write([entry(n) for n in range(1, 41)])
    seen: list[str] = []
    q = LedgerQuery(customer_id="C-1", limit=4)
    while page := store.query(q):
        seen += [e["idempotencyKey"] for e in page]
        after = page[-1]
        q = LedgerQuery(
            customer_id="C-1", limit=4, after=(after["at"], after["source"], after["streamId"])
        )
    assert seen == [f"K-{n}" for n in range(1, 41) if n % 3 == 1]
    assert encode_cursor(after)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        pytest.param(LedgerQuery(outcome="deferred"), [2, 4, 6], id="by-outcome"),
        pytest.param(LedgerQuery(idempotency_key="K-5"), [5], id="by-alert"),
        pytest.param(
            LedgerQuery(start="2026-11-27T10:00:03.000Z", end="2026-11-27T10:00:05.000Z"),
            [3, 4],
            id="period-start-inclusive-end-exclusive",
        ),
        pytest.param(LedgerQuery(phone_hash="h5"), [5], id="by-phone-hash"),
        pytest.param(LedgerQuery(customer_id="nobody"), [], id="unknown-customer"),
    ],
)
def test_filters(store: LedgerStore, query: LedgerQuery, expected: list[int]) -> None:
    store.write([entry(n, phoneHash=f"h{n}") for n in range(1, 7)])
    assert [e["idempotencyKey"] for e in store.query(query)] == [f"K-{n}" for n in expected]


def test_exporting_one_day_twice_gives_identical_bytes(store: LedgerStore) -> None:
    # Written out of order and across midnight: the export orders and bounds them itself.
    late = [entry(n, at=f"2026-11-27T23:59:{n:02d}.500Z") for n in range(30, 0, -1)]
    store.write(late[:15])
    store.write(
        [entry(99, at="2026-11-28T00:00:00.000Z"), entry(98, at="2026-11-26T23:59:59.999Z")]
    )
    store.write(late[15:])
    first = _export(store, "2026-11-27T00:00:00.000Z", "2026-11-28T00:00:00.000Z")
    second = _export(store, "2026-11-27T00:00:00.000Z", "2026-11-28T00:00:00.000Z")
    assert first == second
    assert first.count(b"\n") == 30
    assert b'"idempotencyKey":"K-99"' not in first
    assert b'"idempotencyKey":"K-98"' not in first
    assert first.index(b'"K-1"') < first.index(b'"K-30"')


def test_retention_deletes_what_is_older(store: LedgerStore) -> None:
    store.write([entry(1, at="2021-01-01T10:00:00.000Z"), entry(2, at="2026-11-27T10:00:00.000Z")])
    store.purge("2026-01-01T00:00:00.000Z")
    assert [e["idempotencyKey"] for e in store.query(LedgerQuery())] == ["K-2"]


def test_evidence_round_trips(store: LedgerStore) -> None:
    e: dict[str, Any] = entry(7, phoneHash="abc", phoneMasked="+1*******00", attempt=2)
    store.write([e])
    [got] = store.query(LedgerQuery())
    assert got == e


def test_migrate_applies_each_version_once(pg_url: str) -> None:
    assert postgres.pending_migrations(pg_url) == ["0001_entries.sql"]
    assert postgres.migrate(pg_url) == ["0001_entries.sql"]
    assert postgres.migrate(pg_url) == []
    assert postgres.pending_migrations(pg_url) == []
    with psycopg.connect(pg_url) as conn:
        indexes = {
            r[0]
            for r in conn.execute(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'ledger_entries'"
            )
        }
    assert {"ledger_entries_customer", "ledger_entries_phone", "ledger_entries_at"} <= indexes


def test_erasure_deletes_a_customers_entries(pg_url: str) -> None:
    postgres.migrate(pg_url)
    store = PostgresStore(pg_url)
    store.write([entry(n, phoneHash=f"h{n}") for n in range(1, 7)])
    assert store.erase(customer_id="C-1") == 2
    assert store.erase(phone_hash="h2") == 1
    assert store.erase() == 0  # no filter: nothing, never everything
    assert [e["idempotencyKey"] for e in store.query(LedgerQuery())] == ["K-3", "K-5", "K-6"]
    store.close()


def test_a_torn_line_spoils_only_itself(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    store.write([entry(1)])
    path = next(tmp_path.iterdir())
    with path.open("ab") as f:
        f.write(b'{"source":"tl","streamId":"9-')  # a crash in the middle of a batch
    store.write([entry(2)])
    assert [e["idempotencyKey"] for e in store.query(LedgerQuery())] == ["K-1", "K-2"]


def test_a_full_file_continues_in_the_next(tmp_path: Path) -> None:
    store = FileStore(tmp_path, max_bytes=4096)
    for n in range(1, 31):
        store.write([entry(n)])
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names[0] == "ledger-2026-11-27.1.ndjson" or names[0] == "ledger-2026-11-27.ndjson"
    assert len(names) > 1
    assert all(p.stat().st_size < 4096 + 1024 for p in tmp_path.iterdir())
    assert len(store.query(LedgerQuery(limit=1000))) == 30
