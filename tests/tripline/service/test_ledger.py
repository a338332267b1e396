"""The ledger writer: stream → store, acknowledged only once durable; lag; dead writers' entries."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from prometheus_client import CollectorRegistry
from redis.crc import key_slot

from tests.conftest import alert
from tripline.adapters.ledger.entry import PhoneHasher, operator_message
from tripline.adapters.ledger.ndjson import FileStore
from tripline.adapters.ledger.query import LedgerQuery
from tripline.adapters.redis_clients import SyncRedis
from tripline.adapters.store import (
    ACCEPT_LUA,
    TRANSITION_LUA,
    Keys,
    OutboxHints,
    accept_args,
    transition_args,
)
from tripline.messages import Outcome, Reason
from tripline.pipeline.validate import Limits, Rejected, validate
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
    client: SyncRedis,
    prefix: str,
    store: FileStore,
    consumer: str,
    *,
    clock: Any = None,
    keys: Keys | None = None,
) -> LedgerWriter:
    return LedgerWriter(
        client=client,
        keys=keys or Keys(prefix, ledger=True),
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


HOSTILE = ("}{:|", "k{1}:a%", "{a:k}2", "|}|{", "%7B")
"""Alert keys made of what shapes key names and hash tags."""


def decide(client: SyncRedis, keys: Keys, n: int, tag: str = "") -> list[str]:
    """Accept `n` alerts (the hostile keys among them) and suppress each: a decision apiece.

    The record scripts run as the service runs them (one slot each; on a cluster, on the node
    of the alert's slot), appending to the outbox `keys` names.
    """
    names = [f"{h}{tag}" for h in HOSTILE] + [f"ledger-{tag}-{i}" for i in range(n - len(HOSTILE))]
    for name in names:
        checked = validate(
            orjson.dumps(alert(name, sensor=f"S{{{name}}}")), now=time.time(), limits=Limits()
        )
        assert not isinstance(checked, Rejected)
        k, a = accept_args(keys, checked[0], 3600)
        client.eval(ACCEPT_LUA, len(k), *k, *a)
        k, a = transition_args(
            keys, name, state=Outcome.SUPPRESSED, now=time.time(), reason=Reason.COOLDOWN
        )
        assert client.eval(TRANSITION_LUA, len(k), *k, *a) == 1
    return names


def drain(writer: LedgerWriter, rounds: int = 200) -> int:
    """Run the writer until its outboxes are empty; how many entries it wrote."""
    written = 0
    for _ in range(rounds):
        written += writer.run_once()
        if writer.measure_lag()[0] == 0 and not writer.run_once():
            return written
    raise AssertionError(f"still waiting after {rounds} rounds: {writer.measure_lag()}")


def decisions(store: FileStore) -> Counter[str]:
    """How often each alert's decision is in the store."""
    got = store.query(LedgerQuery(kind="decision", limit=1000))
    return Counter(str(e["idempotencyKey"]) for e in got)


@pytest.mark.parametrize("hinted", [True, False], ids=["hinted", "found-by-the-sweep"])
def test_slot_outboxes_bring_every_decision_once(
    redis_client: redis.Redis, prefix: str, tmp_path: Path, hinted: bool
) -> None:
    # What the service does on a cluster, on one Redis: the same keys, the same scripts.
    keys = Keys(prefix, ledger=True, slot_outboxes=True, hints=OutboxHints() if hinted else None)
    names = decide(redis_client, keys, 120)
    outboxes = {keys.ledger_outbox(n) for n in names}
    assert len(outboxes) > 100  # spread over slots, as unrelated alerts are
    for name in names:  # each in its record's own slot
        assert key_slot(keys.ledger_outbox(name).encode()) == key_slot(keys.record(name).encode())
    store = FileStore(tmp_path)
    writer = _writer(redis_client, prefix, store, "a", keys=keys)
    assert writer.measure_lag()[0] == 120
    assert drain(writer) == 120
    assert decisions(store) == Counter(names)  # each once
    ids = [e["streamId"] for e in store.query(LedgerQuery(limit=1000))]
    assert len(set(ids)) == 120
    assert all("/" in i for i in ids)  # <slot>/<stream id>: ids repeat across outboxes
    assert all(redis_client.xlen(o) == 0 for o in outboxes)


def test_an_outbox_entry_read_but_not_acknowledged_is_not_lost(
    redis_client: redis.Redis, prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = Keys(prefix, ledger=True, slot_outboxes=True, hints=OutboxHints())
    names = decide(redis_client, keys, 30)
    store = FlakyStore(tmp_path)
    dead = _writer(redis_client, prefix, store, "dead", keys=keys)
    store.down = True
    with pytest.raises(ConnectionError):
        dead.run_once()  # read: delivered to "dead", which dies before its store has them
    assert dead.measure_lag()[0] == 30
    store.down = False
    monkeypatch.setattr("tripline.service.ledger._CLAIM_IDLE_MS", 0)
    survivor = _writer(
        redis_client, prefix, store, "survivor", keys=Keys(prefix, ledger=True, slot_outboxes=True)
    )
    assert drain(survivor) == 30  # claimed by the sweep, without a hint
    assert decisions(store) == Counter(names)


def test_an_outbox_entry_written_but_not_acknowledged_is_stored_once(
    redis_client: redis.Redis, prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = Keys(prefix, ledger=True, slot_outboxes=True, hints=OutboxHints())
    names = decide(redis_client, keys, 20)
    store = FileStore(tmp_path)
    dying = _writer(redis_client, prefix, store, "w", keys=keys)

    def killed(*_: Any) -> None:
        raise redis.ConnectionError("killed between the store's commit and the ack")

    monkeypatch.setattr(dying, "_acknowledge", killed)
    with pytest.raises(redis.ConnectionError):
        dying.run_once()
    stored = sum(decisions(store).values())
    assert stored  # in the store...
    assert dying.measure_lag()[0] == 20  # ...and still waiting in Redis
    again = _writer(redis_client, prefix, store, "w", keys=keys)  # restarted, same name
    assert drain(again) == 20  # its own unacknowledged entries written again, the rest once...
    assert decisions(store) == Counter(names)  # ...and counted once: (source, streamId)
