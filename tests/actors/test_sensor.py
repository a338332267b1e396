"""Sensor shards: cooldown in memory and in Redis, snapshots, passivation."""

from __future__ import annotations

from typing import Any

import pykka
import redis

from actors.sensor import SensorShard, shard_of
from conf.schema import SensorConfig
from messages import AlertBatch, Ping, SnapshotTick
from tests.actors.helpers import FakeEnricher, accept
from tests.conftest import alert, ask, text, wait_for
from tripline.stats import Stats
from tripline.store import Keys


def start_shard(
    client: redis.Redis, keys: Keys, enricher: pykka.ActorRef[Any], **conf: Any
) -> pykka.ActorRef[Any]:
    return SensorShard.start(
        shard=0,
        conf=SensorConfig(**conf),
        client=client,
        keys=keys,
        record_ttl=3600,
        enricher=lambda: enricher,
        stats=Stats(),
    )


def status(client: redis.Redis, keys: Keys, key: str) -> tuple[str, str]:
    outcome, reason = client.hmget(keys.record(key), ["outcome", "reason"])
    return text(outcome), text(reason)


def test_one_batch_of_one_sensor_hands_over_one_alert(
    redis_client: redis.Redis, prefix: str
) -> None:
    keys = Keys(prefix)
    enricher = FakeEnricher.start()
    shard = start_shard(redis_client, keys, enricher)
    alerts = accept(redis_client, keys, *[alert(sensor="S1") for _ in range(3)])
    shard.tell(AlertBatch(alerts=tuple(alerts)))
    ask(shard, Ping())

    handed = ask(enricher, "list")
    assert [a.idempotency_key for a in handed] == [alerts[0].idempotency_key]
    assert [status(redis_client, keys, a.idempotency_key) for a in alerts[1:]] == [
        ("suppressed", "cooldown")
    ] * 2


def test_a_fresh_shard_honours_the_cooldown_claimed_before_it(
    redis_client: redis.Redis, prefix: str
) -> None:
    keys = Keys(prefix)
    enricher = FakeEnricher.start()
    first = start_shard(redis_client, keys, enricher)
    (a1,) = accept(redis_client, keys, alert(sensor="S2"))
    first.tell(AlertBatch(alerts=(a1,)))
    first.stop()  # writes its snapshot
    second = start_shard(redis_client, keys, enricher)
    (a2,) = accept(redis_client, keys, alert(sensor="S2"))
    second.tell(AlertBatch(alerts=(a2,)))
    ask(second, Ping())
    assert status(redis_client, keys, a2.idempotency_key) == ("suppressed", "cooldown")
    assert len(ask(enricher, "list")) == 1


def test_replaying_the_episode_that_holds_the_window_is_not_suppressed(
    redis_client: redis.Redis, prefix: str
) -> None:
    """A restart may route the same accepted alert again; the record decides, not the cooldown."""
    keys = Keys(prefix)
    enricher = FakeEnricher.start()
    (a1,) = accept(redis_client, keys, alert(sensor="S3"))
    start_shard(redis_client, keys, enricher).tell(AlertBatch(alerts=(a1,)))
    wait_for(lambda: len(ask(enricher, "list")) == 1)
    other = start_shard(redis_client, keys, enricher)
    other.tell(AlertBatch(alerts=(a1,)))
    ask(other, Ping())
    assert len(ask(enricher, "list")) == 2
    assert status(redis_client, keys, a1.idempotency_key) == ("", "")


def test_resolved_alerts_are_suppressed(redis_client: redis.Redis, prefix: str) -> None:
    keys = Keys(prefix)
    enricher = FakeEnricher.start()
    shard = start_shard(redis_client, keys, enricher)
    (a,) = accept(redis_client, keys, alert(sensor="S4", status="resolved"))
    shard.tell(AlertBatch(alerts=(a,)))
    ask(shard, Ping())
    assert status(redis_client, keys, a.idempotency_key) == ("suppressed", "resolved")
    assert ask(enricher, "list") == []


def test_entities_are_capped_and_passivated_with_snapshots(
    redis_client: redis.Redis, prefix: str
) -> None:
    keys = Keys(prefix)
    enricher = FakeEnricher.start()
    shard = start_shard(
        redis_client, keys, enricher, max_entities=100, shards=1, passivate_after_seconds=1
    )
    alerts = accept(redis_client, keys, *[alert(sensor=f"P{n}") for n in range(250)])
    shard.tell(AlertBatch(alerts=tuple(alerts)))
    assert ask(shard, Ping()) <= 100
    shard.tell(SnapshotTick())
    ask(shard, Ping())
    snapshots = list(redis_client.scan_iter(match=f"{prefix}:*:snap:*", count=1000))
    assert len(snapshots) == 250  # the passivated ones were saved before they left memory


def test_shard_choice_is_stable() -> None:
    assert shard_of("TEMP-SNS-4421", 4) == shard_of("TEMP-SNS-4421", 4)
    assert {shard_of(f"s{n}", 4) for n in range(100)} == {0, 1, 2, 3}
