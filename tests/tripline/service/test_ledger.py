"""The ledger writer: stream → store, acknowledged only once durable; lag; dead writers' entries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis
from prometheus_client import CollectorRegistry

from tripline.adapters.ledger.entry import PhoneHasher, operator_message
from tripline.adapters.ledger.ndjson import FileStore
from tripline.adapters.ledger.query import LedgerQuery
from tripline.adapters.store import Keys
from tripline.service.ledger import LedgerWriter

pytestmark = pytest.mark.integration


class FlakyStore(FileStore):
    """A FileStore that refuses writes while `down`."""

    down = False

    def write(self, entries: list[dict[str, Any]]) -> int:
        if self.down:
            raise ConnectionError("store away")
        return super().write(entries)


def _writer(
    client: redis.Redis, prefix: str, store: FileStore, consumer: str, clock: Any = None
) -> LedgerWriter:
    return LedgerWriter(
        client=client,
        keys=Keys(prefix, ledger=True),
        store=store,
        hasher=PhoneHasher(b"k"),
        consumer=consumer,
        batch_size=10,
        retention_days=1825,
        registry=CollectorRegistry(),
        **({"clock": clock} if clock else {}),
    )


def _add(client: redis.Redis, prefix: str, n: int) -> None:
    key = Keys(prefix, ledger=True).ledger_entries()
    for i in range(n):
        msg = operator_message(
            action="dnc_add",
            at=f"2026-11-27T10:00:{i:02d}.000Z",
            actor="ops",
            origin="cli",
            phone="+14155550100",
        )
        client.xadd(key, {"operator": msg})


def test_entries_reach_the_store_and_leave_redis(
    redis_client: redis.Redis, prefix: str, tmp_path: Path
) -> None:
    store = FileStore(tmp_path)
    writer = _writer(redis_client, prefix, store, "a")
    _add(redis_client, prefix, 25)
    assert writer.measure_lag()[0] == 25
    written = sum(writer.run_once() for _ in range(4))
    assert written == 25
    assert writer.measure_lag() == (0, 0.0)
    got = store.query(LedgerQuery(limit=100))
    assert len(got) == 25
    assert {e["actor"] for e in got} == {"ops"}
    assert all(e["phoneHash"] == PhoneHasher(b"k").digest("+14155550100") for e in got)


def test_a_store_outage_keeps_every_entry_waiting(
    redis_client: redis.Redis, prefix: str, tmp_path: Path
) -> None:
    store = FlakyStore(tmp_path)
    writer = _writer(redis_client, prefix, store, "a")
    _add(redis_client, prefix, 15)
    store.down = True
    for _ in range(3):
        with pytest.raises(ConnectionError):
            writer.run_once()
    assert writer.measure_lag()[0] == 15  # nothing acknowledged, nothing lost
    assert writer.lag_seconds > 0
    store.down = False
    assert writer.run_once() == 10  # the batch in hand first
    assert writer.run_once() == 5
    assert len(store.query(LedgerQuery(limit=100))) == 15


def test_a_restarted_writer_writes_what_it_read_before(
    redis_client: redis.Redis, prefix: str, tmp_path: Path
) -> None:
    store = FlakyStore(tmp_path)
    first = _writer(redis_client, prefix, store, "a")
    _add(redis_client, prefix, 5)
    store.down = True
    with pytest.raises(ConnectionError):
        first.run_once()  # read (delivered to "a"), never acknowledged: the process dies here
    store.down = False
    again = _writer(redis_client, prefix, store, "a")
    assert again.run_once() == 5
    assert again.measure_lag()[0] == 0


def test_a_dead_writers_entries_are_claimed_by_another(
    redis_client: redis.Redis, prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FlakyStore(tmp_path)
    dead = _writer(redis_client, prefix, store, "dead")
    _add(redis_client, prefix, 5)
    store.down = True
    with pytest.raises(ConnectionError):
        dead.run_once()
    store.down = False
    monkeypatch.setattr("tripline.service.ledger._CLAIM_IDLE_MS", 0)
    survivor = _writer(redis_client, prefix, store, "survivor")
    assert survivor.run_once() == 5
    assert len(store.query(LedgerQuery(limit=100))) == 5


def test_retention_runs_from_the_writer(
    redis_client: redis.Redis, prefix: str, tmp_path: Path
) -> None:
    store = FileStore(tmp_path)
    old = {
        "source": "tl",
        "streamId": "1-0",
        "kind": "operator",
        "at": "2019-01-01T00:00:00.000Z",
        "evidence": {},
    }
    store.write([old])
    writer = _writer(redis_client, prefix, store, "a", clock=lambda: 1_795_000_000.0)
    writer.run_once()
    assert store.query(LedgerQuery()) == []
