"""Accepting: a critical alert's sensor snapshot is read in the round trip that records it."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
import redis

from messages import Snapshot
from pipeline.prioritise import PriorityRules
from pipeline.validate import Limits
from tests.conftest import alert
from tripline import store
from tripline.accept import Accepted, Acceptor, Duplicate, snapshots
from tripline.stats import Stats
from tripline.store import Keys


def acceptor(client: redis.Redis, keys: Keys) -> Acceptor:
    return Acceptor(
        client=client,
        keys=keys,
        limits=Limits(),
        rules=PriorityRules.from_config("normal", {"temp_critical": "critical"}, {}),
        record_ttl=3600,
        stats=Stats(),
        clock=time.time,
    )


def test_critical_alerts_come_back_with_their_sensors_snapshots(
    redis_client: redis.Redis, prefix: str
) -> None:
    keys = Keys(prefix)
    docs = [
        alert(sensor="S-KNOWN", customer="C-1", alert_type="temp_critical"),
        alert(sensor="S-NEW", customer="C-1", alert_type="temp_critical"),
        alert(sensor="S-KNOWN", customer="C-1", alert_type="door_open"),  # not critical
    ]
    redis_client.set(keys.snapshot("C-1", "S-KNOWN"), b'{"version": 1}')
    before = time.monotonic()
    known, new, normal = acceptor(redis_client, keys).accept(
        [(orjson.dumps(d), False) for d in docs]
    )
    assert isinstance(known, Accepted)
    assert isinstance(new, Accepted)
    assert isinstance(normal, Accepted)
    assert known.snapshot is not None
    assert known.snapshot.blob == b'{"version": 1}'
    assert before <= known.snapshot.read_after <= time.monotonic()
    assert new.snapshot == Snapshot(b"", known.snapshot.read_after)  # none stored: b""
    assert normal.snapshot is None  # not read: its shard reads it if it must
    # By sensor, for the shards; the critical S-KNOWN's read wins over the unread one.
    assert snapshots([known, new, normal]) == {
        "S-KNOWN": known.snapshot,
        "S-NEW": new.snapshot,
    }


def test_a_duplicate_reads_nothing_and_routes_nothing(
    redis_client: redis.Redis, prefix: str
) -> None:
    keys = Keys(prefix)
    doc = alert(sensor="S-DUP", alert_type="temp_critical")
    first = acceptor(redis_client, keys).accept([(orjson.dumps(doc), False)])
    again = acceptor(redis_client, keys).accept([(orjson.dumps(doc), False)])
    assert isinstance(first[0], Accepted)
    assert again == [Duplicate(doc["idempotencyKey"])]
    assert snapshots(again) == {}


class ReplyLost:
    """The real round trip, then the connection breaks before the replies are read (once)."""

    def __init__(self) -> None:
        self.broken = False

    def __call__(self, pipe: Any, *scripts: Any) -> list[Any]:
        results = store.execute(pipe, *scripts)
        if not self.broken:
            self.broken = True
            raise redis.ConnectionError("connection lost while reading the replies")
        return results


def test_a_retry_routes_what_an_attempt_that_never_heard_back_recorded(
    redis_client: redis.Redis, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis wrote the records and the replies were lost: the retry finds them recorded.

    Nothing routed them (the failed attempt raised): the retry must, or they wait 'accepted'
    for the sweep's in-flight limit. A key no attempt of ours left in doubt stays a duplicate.
    """
    keys = Keys(prefix)
    accepting = acceptor(redis_client, keys)
    doubtful, known = alert(sensor="S-LOST"), alert(sensor="S-KNOWN")
    acceptor(redis_client, keys).accept([(orjson.dumps(known), False)])  # another delivery's
    monkeypatch.setattr("tripline.accept.execute", ReplyLost())
    batch = [(orjson.dumps(doubtful), False), (orjson.dumps(known), False)]
    with pytest.raises(redis.ConnectionError):
        accepting.accept(batch)
    assert redis_client.exists(keys.record(doubtful["idempotencyKey"]))  # it was written
    assert accepting.uncertain(doubtful["idempotencyKey"])
    again = accepting.accept(batch)
    assert isinstance(again[0], Accepted)
    assert again[0].alert.idempotency_key == doubtful["idempotencyKey"]
    assert isinstance(again[1], Accepted)  # in doubt too: the same failed attempt carried it
    assert not accepting.uncertain(doubtful["idempotencyKey"])
    # Once settled, a third delivery is an ordinary duplicate.
    assert accepting.accept(batch) == [
        Duplicate(doubtful["idempotencyKey"]),
        Duplicate(known["idempotencyKey"]),
    ]
