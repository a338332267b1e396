"""Accepting: a critical alert's sensor snapshot is read in the round trip that records it."""

from __future__ import annotations

import time

import orjson
import redis

from messages import Snapshot
from pipeline.prioritise import PriorityRules
from pipeline.validate import Limits
from tests.conftest import alert
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
