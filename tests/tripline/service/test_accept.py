"""Accepting: a critical alert's sensor snapshot is read in the round trip that records it."""

from __future__ import annotations

import asyncio
import base64
import time
from dataclasses import replace
from typing import Any

import orjson
import pytest
import redis
from prometheus_client import CollectorRegistry

from tests.conftest import REDIS_URL, alert, free_port
from tripline.adapters import redis_clients, redis_io
from tripline.adapters.deadletter import DeadLetters
from tripline.adapters.store import Keys
from tripline.messages import Snapshot
from tripline.pipeline.prioritise import PriorityRules
from tripline.pipeline.validate import Limits
from tripline.service.accept import (
    Accepted,
    Acceptor,
    Checked,
    Conflict,
    Duplicate,
    Quarantined,
    snapshots,
)
from tripline.service.stats import Stats


def acceptor(client: redis.Redis, keys: Keys, dead_letters: DeadLetters | None = None) -> Acceptor:
    return Acceptor(
        client=client,
        keys=keys,
        limits=Limits(),
        rules=PriorityRules.from_config("normal", {"temp_critical": "critical"}, {}),
        record_ttl=3600,
        stats=Stats(),
        clock=time.time,
        dead_letters=dead_letters,
        attempts=3,
    )


def dead_letters(client: redis.Redis, keys: Keys) -> DeadLetters:
    return DeadLetters(client=client, keys=keys, max_entries=100, registry=CollectorRegistry())


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

    def __call__(self, pipe: Any, *scripts: Any, **options: Any) -> list[Any]:
        results = redis_io.execute(pipe, *scripts, **options)
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
    monkeypatch.setattr("tripline.service.accept.execute", ReplyLost())
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


# --- a key reused for another alert ---------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "fields"),
    [
        ({"sensorId": "S-OTHER"}, ("sensorId",)),
        ({"customerId": "C-OTHER"}, ("customerId",)),
        ({"alertType": "flood"}, ("alertType",)),
        ({"status": "resolved"}, ("status",)),
        (
            {"telemetryData": {"currentValue": 1.0, "threshold": 85.0, "unit": "celsius"}},
            ("telemetryHash",),
        ),
        ({"sensorId": "S-OTHER", "alertType": "flood"}, ("sensorId", "alertType")),
    ],
)
def test_a_key_reused_for_another_alert_is_a_conflict_and_the_record_stays(
    redis_client: redis.Redis, prefix: str, change: dict[str, Any], fields: tuple[str, ...]
) -> None:
    keys = Keys(prefix)
    first = alert(sensor="S-1", customer="C-1")
    accepting = acceptor(redis_client, keys)
    assert isinstance(accepting.accept([(orjson.dumps(first), False)])[0], Accepted)
    before = redis_client.hgetall(keys.record(first["idempotencyKey"]))
    (verdict,) = accepting.accept([(orjson.dumps({**first, **change}), False)])
    assert verdict == Conflict(first["idempotencyKey"], fields)
    assert redis_client.hgetall(keys.record(first["idempotencyKey"])) == before
    # The identical alert again (re-sent later, with a fresh timestamp too) is a duplicate.
    again = {**first, "timestamp": alert()["timestamp"]}
    assert accepting.accept([(orjson.dumps(again), False)]) == [Duplicate(first["idempotencyKey"])]


# --- one alert's failure is that alert's --------------------------------------------------


def test_an_alert_whose_own_keys_fail_is_quarantined_and_the_batch_goes_on(
    redis_client: redis.Redis, prefix: str
) -> None:
    keys = Keys(prefix)
    poisoned, good = alert(sensor="S-P"), alert(sensor="S-G")
    # Its record key holds a list: every attempt to record it answers WRONGTYPE.
    redis_client.rpush(keys.record(poisoned["idempotencyKey"]), "not a record")
    dead = dead_letters(redis_client, keys)
    body = orjson.dumps(poisoned)
    bad, ok = acceptor(redis_client, keys, dead).accept(
        [(body, False), (orjson.dumps(good), False)], source="http"
    )
    assert isinstance(ok, Accepted)
    assert redis_client.exists(keys.record(good["idempotencyKey"]))
    assert isinstance(bad, Quarantined)
    assert bad.idempotency_key == poisoned["idempotencyKey"]
    assert "dead-letter" in bad.problems[0].message
    (entry,) = dead.recent()
    assert entry["source"] == "http"
    assert entry["payload"] == body.decode()
    assert entry["encoding"] == "utf-8"
    assert entry["attempts"] == "3"
    assert "WRONGTYPE" in entry["error"]
    assert dead.counts() == {"http": 1}
    # Out of the pending index too: the sweep would otherwise quarantine it a second time.
    assert redis_client.zscore(keys.pending("default"), poisoned["idempotencyKey"]) is None
    assert redis_client.zscore(keys.pending("default"), good["idempotencyKey"]) is not None


def test_a_payload_the_check_fails_on_is_quarantined_not_raised(
    redis_client: redis.Redis, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = Keys(prefix)
    dead = dead_letters(redis_client, keys)

    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr("tripline.service.accept.validate", broken)
    body = b"\xff\xfe not utf-8"
    verdict = acceptor(redis_client, keys, dead).check(
        body, retained=False, topic="sensors/x/alerts"
    )
    assert isinstance(verdict, Quarantined)
    (entry,) = dead.recent()
    assert entry["encoding"] == "base64"
    assert base64.b64decode(entry["payload"]) == body
    assert entry["topic"] == "sensors/x/alerts"
    assert "RecursionError" in entry["error"]


def test_a_document_that_cannot_be_written_is_quarantined_alone(
    redis_client: redis.Redis, prefix: str
) -> None:
    keys = Keys(prefix)
    accepting = acceptor(redis_client, keys, dead_letters(redis_client, keys))
    good = accepting.check(orjson.dumps(alert()), retained=False)
    deep = accepting.check(orjson.dumps(alert()), retained=False)
    assert isinstance(good, Checked)
    assert isinstance(deep, Checked)
    nested: list[Any] = []
    for _ in range(300):  # orjson writes at most 254 levels
        nested = [nested]
    deep = replace(deep, doc={**deep.doc, "x": nested})
    verdicts = accepting.record([deep, good])
    assert isinstance(verdicts[0], Quarantined)
    assert isinstance(verdicts[1], Accepted)
    assert not redis_client.exists(keys.record(deep.alert.idempotency_key))


def test_a_record_our_failed_attempt_wrote_midway_is_accepted_not_a_duplicate(
    redis_client: redis.Redis, prefix: str
) -> None:
    keys = Keys(prefix)
    doc = alert(sensor="S-HIST")
    # Its history key holds a string: the record's script writes the record, then fails on the
    # history. The retry finds the record our own attempt wrote: it goes on, routed once.
    redis_client.set(keys.history(doc["idempotencyKey"]), "not a list")
    (verdict,) = acceptor(redis_client, keys).accept([(orjson.dumps(doc), False)])
    assert isinstance(verdict, Accepted)
    assert redis_client.hget(keys.record(doc["idempotencyKey"]), "sensorId") == b"S-HIST"


def test_an_unreadable_snapshot_or_context_does_not_refuse_the_alert(
    redis_client: redis.Redis, prefix: str
) -> None:
    keys = Keys(prefix)
    doc = alert(sensor="S-SNAP", customer="C-1", alert_type="temp_critical")
    redis_client.rpush(keys.snapshot("C-1", "S-SNAP"), "not a snapshot")
    accepting = acceptor(redis_client, keys)
    checked = accepting.check(orjson.dumps(doc), retained=False)
    assert isinstance(checked, Checked)
    redis_client.rpush(keys.context(checked.alert.reference_id), "not a context")
    (verdict,) = accepting.record([checked])
    assert isinstance(verdict, Accepted)
    assert verdict.snapshot is None  # not read here: its shard reads it
    assert redis_client.exists(keys.record(doc["idempotencyKey"]))


def test_a_broken_pending_index_fails_the_batch_not_its_alerts(
    redis_client: redis.Redis, prefix: str
) -> None:
    keys = Keys(prefix)
    redis_client.set(keys.pending("default"), "not an index")
    batch = [(orjson.dumps(alert()), False), (orjson.dumps(alert()), False)]
    with pytest.raises(redis.ResponseError):
        acceptor(redis_client, keys, dead_letters(redis_client, keys)).accept(batch)
    assert redis_client.xlen(keys.dead_letters()) == 0  # nothing quarantined for it


# --- record_async: the webhook's path, on an event loop's auto-pipeline ------------------


def _record_async(accepting: Acceptor, items: list[Checked | Any], url: str = REDIS_URL) -> Any:
    """Record `items` concurrently, as requests in flight do; (verdicts, round trips)."""

    async def go() -> tuple[list[Any], int]:
        client = redis_clients.async_redis(url, connections=1)
        pipeline = redis_io.AutoPipeline(client)
        try:
            verdicts = await asyncio.gather(
                *(accepting.record_async(item, pipeline) for item in items),
                return_exceptions=True,
            )
            return list(verdicts), pipeline.round_trips
        finally:
            await pipeline.aclose()
            await redis_clients.aclose(client)

    return asyncio.run(go())


def test_requests_in_flight_share_one_round_trip_with_the_same_verdicts_as_a_batch(
    redis_client: redis.Redis, prefix: str
) -> None:
    keys = Keys(prefix)
    accepting = acceptor(redis_client, keys)
    first = alert(sensor="S-A", customer="C-1", alert_type="temp_critical")
    reused = {**first, "sensorId": "S-OTHER"}  # the same key, another alert
    redis_client.set(keys.snapshot("C-1", "S-A"), b'{"version": 2}')
    (recorded,) = accepting.accept([(orjson.dumps(first), False)])
    assert isinstance(recorded, Accepted)
    docs = [alert(sensor=f"S-{n}") for n in range(20)]
    critical = alert(sensor="S-A", customer="C-1", alert_type="temp_critical")
    items = [
        accepting.check(orjson.dumps(d), retained=False, source="http")
        for d in [*docs, first, reused, critical, {"not": "an alert"}]
    ]
    verdicts, round_trips = _record_async(accepting, items)
    assert round_trips == 1  # 23 alerts' commands, one trip to Redis
    assert all(isinstance(v, Accepted) for v in verdicts[:20])
    assert all(redis_client.exists(keys.record(d["idempotencyKey"])) for d in docs)
    assert isinstance(verdicts[20], Duplicate)
    assert isinstance(verdicts[21], Conflict)
    assert verdicts[21].fields == ("sensorId",)
    assert isinstance(verdicts[22], Accepted)
    assert verdicts[22].snapshot is not None
    assert verdicts[22].snapshot.blob == b'{"version": 2}'
    assert not isinstance(verdicts[23], Accepted | Duplicate | Conflict)  # rejected, as given
    assert verdicts[23] is items[23]
    pending = keys.pending("default")
    assert redis_client.zcard(pending) == 22  # the 20, the first one and the critical one


def test_an_alert_whose_own_keys_fail_in_flight_is_quarantined_and_the_others_go_on(
    redis_client: redis.Redis, prefix: str
) -> None:
    keys = Keys(prefix)
    dead = dead_letters(redis_client, keys)
    accepting = acceptor(redis_client, keys, dead)
    poisoned, good, midway = alert(sensor="S-P"), alert(sensor="S-G"), alert(sensor="S-M")
    redis_client.rpush(keys.record(poisoned["idempotencyKey"]), "not a record")
    redis_client.set(keys.history(midway["idempotencyKey"]), "not a list")
    items = [
        accepting.check(orjson.dumps(d), retained=False, source="http")
        for d in (poisoned, good, midway)
    ]
    (bad, ok, retried), _ = _record_async(accepting, items)
    assert isinstance(ok, Accepted)
    assert isinstance(bad, Quarantined)
    assert bad.idempotency_key == poisoned["idempotencyKey"]
    (entry,) = dead.recent()
    assert entry["attempts"] == "3"
    assert "WRONGTYPE" in entry["error"]
    assert redis_client.zscore(keys.pending("default"), poisoned["idempotencyKey"]) is None
    # Its first attempt wrote the record, then failed on the history: ours, so it goes on.
    assert isinstance(retried, Accepted)


def test_redis_failing_as_a_whole_raises_and_the_keys_are_remembered_as_uncertain(
    redis_client: redis.Redis, prefix: str
) -> None:
    keys = Keys(prefix)
    accepting = acceptor(redis_client, keys, dead_letters(redis_client, keys))
    doc = alert()
    item = accepting.check(orjson.dumps(doc), retained=False, source="http")
    redis_client.set(keys.pending("default"), "not an index")
    (error,), _ = _record_async(accepting, [item])
    assert isinstance(error, redis.ResponseError)  # the instance's index, not this alert
    assert redis_client.xlen(keys.dead_letters()) == 0
    redis_client.delete(keys.pending("default"))
    (away,), _ = _record_async(accepting, [item], url=f"redis://127.0.0.1:{free_port()}/0")
    assert isinstance(away, redis.ConnectionError)
    assert accepting.uncertain(doc["idempotencyKey"])
    # The first attempt wrote its record before the index failed: the retry that finds it is
    # the delivery that goes on, not a duplicate.
    (verdict,), _ = _record_async(accepting, [item])
    assert isinstance(verdict, Accepted)
    assert not accepting.uncertain(doc["idempotencyKey"])
