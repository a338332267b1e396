"""Sensor shards: cooldown in memory and in Redis, snapshots, passivation."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson
import pykka
import redis
from prometheus_client import CollectorRegistry

from tests.actors.helpers import FakeDialer, FakeEnricher, accept
from tests.conftest import REDIS_URL, alert, ask, wait_for
from tripline.actors import FAILURES
from tripline.actors._retry import Backoff
from tripline.actors.sensor import REDIS_OUTAGE, SensorShard, shard_of
from tripline.adapters.deadletter import DeadLetters
from tripline.adapters.store import Keys, text
from tripline.conf.schema import SensorConfig
from tripline.messages import (
    AlertBatch,
    EntityCountQuery,
    FleetIncident,
    Outcome,
    Ping,
    Reason,
    SensorResolved,
    Snapshot,
    SnapshotTick,
    TaskIntent,
    WorkBatch,
)
from tripline.pipeline.fleet import FleetRules
from tripline.pipeline.maintenance import Window
from tripline.pipeline.suppress import SensorState
from tripline.service.controls import OperatorControls
from tripline.service.events import Events
from tripline.service.stats import Stats


def start_shard(
    client: redis.Redis,
    keys: Keys,
    enricher: pykka.ActorRef[Any],
    *,
    dialer: pykka.ActorRef[Any] | None = None,
    events: Events | None = None,
    fleet: FleetRules | None = None,
    maintenance: OperatorControls | None = None,
    dead_letters: DeadLetters | None = None,
    clock: Callable[[], float] = time.time,
    outage: Backoff = REDIS_OUTAGE,
    **conf: Any,
) -> pykka.ActorRef[Any]:
    dialer_ref = dialer or FakeDialer.start()
    return SensorShard.start(
        shard=0,
        conf=SensorConfig(**conf),
        client=client,
        keys=keys,
        pending_key=keys.pending("default"),
        record_ttl=3600,
        enricher=lambda: enricher,
        dialer=lambda: dialer_ref,
        stats=Stats(),
        events=events or Events("test"),
        fleet=fleet or FleetRules(),
        maintenance=maintenance,
        dead_letters=dead_letters,
        clock=clock,
        outage=outage,
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


def test_a_sensor_in_maintenance_is_not_called_and_claims_no_window(
    redis_client: redis.Redis, prefix: str
) -> None:
    keys = Keys(prefix)
    enricher = FakeEnricher.start()
    held = OperatorControls()
    now = time.time()
    held.windows = (
        Window(
            window_id="w1",
            sensor_id="M1",
            starts_at=now - 60,
            ends_at=now + 3600,
            comment="pump swap",
            created_by="ana",
            created_at=now - 60,
        ),
    )
    shard = start_shard(redis_client, keys, enricher, maintenance=held)
    worked_on, other = accept(redis_client, keys, alert(sensor="M1"), alert(sensor="M2"))
    shard.tell(AlertBatch(alerts=(worked_on, other)))
    ask(shard, Ping())
    assert status(redis_client, keys, worked_on.idempotency_key) == ("suppressed", "maintenance")
    detail = text(redis_client.hget(keys.record(worked_on.idempotency_key), "detail"))
    assert detail == "maintenance w1 by ana: pump swap"
    assert [a.sensor_id for a in ask(enricher, "list")] == ["M2"]
    assert not redis_client.exists(keys.cooldown(worked_on.customer_id, "M1"))
    # The work is done: the sensor's next alert is called, no cooldown stands in its way.
    held.windows = ()
    (after,) = accept(redis_client, keys, alert(sensor="M1"))
    shard.tell(AlertBatch(alerts=(after,)))
    ask(shard, Ping())
    assert [a.idempotency_key for a in ask(enricher, "list")][-1] == after.idempotency_key


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
    assert ask(shard, EntityCountQuery()) <= 100
    shard.tell(SnapshotTick())
    ask(shard, Ping())
    snapshots = list(redis_client.scan_iter(match=f"{prefix}:*:snap:*", count=1000))
    assert len(snapshots) == 250  # the passivated ones were saved before they left memory


def test_a_tick_saves_every_dirty_entity_in_chunks_and_drops_only_the_idle(
    redis_client: redis.Redis, prefix: str
) -> None:
    keys = Keys(prefix)
    clock = Clock()
    shard = start_shard(
        redis_client,
        keys,
        FakeEnricher.start(),
        clock=clock,
        shards=1,
        max_entities=10_000,
        passivate_after_seconds=60,
    )
    old = accept(redis_client, keys, *[alert(sensor=f"O{n}") for n in range(1_200)])
    shard.tell(AlertBatch(alerts=tuple(old)))
    ask(shard, Ping())
    clock.now += 120  # the first 1,200 are idle now...
    recent = accept(redis_client, keys, *[alert(sensor=f"R{n}") for n in range(5)])
    (again,) = accept(redis_client, keys, alert(sensor="O7"))  # ...but for this one
    shard.tell(AlertBatch(alerts=(*recent, again)))
    assert ask(shard, EntityCountQuery()) == 1_205
    shard.tell(SnapshotTick())  # chunks of snapshots, alerts may pass between them
    wait_for(
        lambda: len(list(redis_client.scan_iter(match=f"{prefix}:*:snap:*", count=2000))) == 1_205
    )
    assert ask(shard, EntityCountQuery()) == 6  # the five recent sensors and the one seen again


def test_shard_choice_is_stable() -> None:
    assert shard_of("TEMP-SNS-4421", 4) == shard_of("TEMP-SNS-4421", 4)
    assert {shard_of(f"s{n}", 4) for n in range(100)} == {0, 1, 2, 3}


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def test_a_sensor_toggling_every_10s_for_an_hour_gets_no_call_per_toggle(
    redis_client: redis.Redis, prefix: str
) -> None:
    """Simulated hour on an injected clock; cooldown 0, so only the flap detector can hold it."""
    keys, clock, events = Keys(prefix), Clock(), Events("test")
    enricher, dialer = FakeEnricher.start(), FakeDialer.start()
    shard = start_shard(
        redis_client, keys, enricher, dialer=dialer, events=events, clock=clock, cooldown_seconds=0
    )
    statuses = ["firing" if n % 2 == 0 else "resolved" for n in range(360)]
    alerts = accept(redis_client, keys, *[alert(sensor="FL1", status=s) for s in statuses])
    for a in alerts:
        shard.tell(AlertBatch(alerts=(a,)))
        ask(shard, Ping())
        clock.now += 10.0

    handed = ask(enricher, "list")
    # Firings 1, 3 and 5 precede the detector's verdict (the 6th transition reaches 35.5 %);
    # in a service the resolves between them cancel their pending calls (see the dialer).
    assert [a.idempotency_key for a in handed] == [a.idempotency_key for a in alerts[0:5:2]]
    tasks = [m for m in ask(dialer, Ping()) if isinstance(m, TaskIntent)]
    assert len(tasks) == 1  # one maintenance task for the episode, not one per toggle
    assert (tasks[0].reason, tasks[0].outcome) == (Reason.FLAPPING, Outcome.SUPPRESSED)
    assert tasks[0].alert.idempotency_key == alerts[5].idempotency_key
    later = [status(redis_client, keys, a.idempotency_key) for a in alerts[6:]]
    assert set(later) == {("suppressed", "flapping")}
    resolves = [m for m in ask(dialer, Ping()) if isinstance(m, SensorResolved)]
    assert len(resolves) == 180  # every resolve may cancel waiting calls
    assert [e["type"] for e in events.recent()] == ["flapping_started"]

    # Silence: every quiet minute is a steady sample, so the episode ends and is reported once.
    for _ in range(30):
        clock.now += 60.0
        shard.tell(SnapshotTick())
    ask(shard, Ping())
    assert [e["type"] for e in events.recent()] == ["flapping_stopped", "flapping_started"]
    assert not redis_client.exists(keys.flap_task(alerts[0].customer_id, "FL1"))


def test_the_flap_episode_survives_a_restart_and_raises_no_second_task(
    redis_client: redis.Redis, prefix: str
) -> None:
    keys, clock = Keys(prefix), Clock()
    enricher, dialer = FakeEnricher.start(), FakeDialer.start()
    first = start_shard(redis_client, keys, enricher, dialer=dialer, clock=clock)
    statuses = ["firing" if n % 2 == 0 else "resolved" for n in range(8)]
    for a in accept(redis_client, keys, *[alert(sensor="FL2", status=s) for s in statuses]):
        first.tell(AlertBatch(alerts=(a,)))
        clock.now += 10.0
    ask(first, Ping())
    first.stop()  # its final snapshot carries the flap history

    second = start_shard(redis_client, keys, enricher, dialer=dialer, clock=clock)
    (again,) = accept(redis_client, keys, alert(sensor="FL2"))
    second.tell(AlertBatch(alerts=(again,)))
    ask(second, Ping())
    assert status(redis_client, keys, again.idempotency_key) == ("suppressed", "flapping")
    tasks = [m for m in ask(dialer, Ping()) if isinstance(m, TaskIntent)]
    assert len(tasks) == 1


def test_a_lost_snapshot_re_detects_the_episode_without_a_second_task(
    redis_client: redis.Redis, prefix: str
) -> None:
    """Killed before its snapshot: the detector starts over, the task claim in Redis holds."""
    keys, clock = Keys(prefix), Clock()
    enricher, dialer = FakeEnricher.start(), FakeDialer.start()
    statuses = ["firing" if n % 2 == 0 else "resolved" for n in range(8)]
    for _ in range(2):
        shard = start_shard(redis_client, keys, enricher, dialer=dialer, clock=clock)
        for a in accept(redis_client, keys, *[alert(sensor="FL3", status=s) for s in statuses]):
            shard.tell(AlertBatch(alerts=(a,)))
            clock.now += 10.0
        ask(shard, Ping())
        shard.stop()
        redis_client.delete(*redis_client.keys(f"{prefix}:*:snap:FL3"))
    tasks = [m for m in ask(dialer, Ping()) if isinstance(m, TaskIntent)]
    assert len(tasks) == 1


def test_many_distinct_firing_sensors_open_a_fleet_incident_and_quiet_closes_it(
    redis_client: redis.Redis, prefix: str
) -> None:
    keys, clock, events = Keys(prefix), Clock(), Events("test")
    enricher, dialer = FakeEnricher.start(), FakeDialer.start()
    rules = FleetRules(sensors=50, window_seconds=60.0, clear_ratio=0.5)
    shard = start_shard(
        redis_client, keys, enricher, dialer=dialer, events=events, fleet=rules, clock=clock
    )
    alerts = accept(redis_client, keys, *[alert(sensor=f"FS{n}") for n in range(80)])
    shard.tell(AlertBatch(alerts=tuple(alerts[:50])))
    ask(shard, Ping())
    assert [m for m in ask(dialer, Ping()) if isinstance(m, FleetIncident)] == []
    shard.tell(AlertBatch(alerts=tuple(alerts[50:])))
    ask(shard, Ping())
    incidents = [m for m in ask(dialer, Ping()) if isinstance(m, FleetIncident)]
    assert [(m.active, m.sensors) for m in incidents] == [(True, 80)]
    assert redis_client.exists(keys.fleet_incident())
    clock.now += 61.0
    shard.tell(SnapshotTick())
    ask(shard, Ping())
    incidents = [m for m in ask(dialer, Ping()) if isinstance(m, FleetIncident)]
    assert [m.active for m in incidents] == [True, False]
    assert [e["type"] for e in events.recent()] == [
        "fleet_incident_ended",
        "fleet_incident_started",
    ]
    assert not redis_client.exists(keys.fleet_incident())


def test_during_an_incident_non_critical_alerts_become_tasks_without_a_crm_lookup(
    redis_client: redis.Redis, prefix: str
) -> None:
    keys, clock = Keys(prefix), Clock()
    enricher, dialer = FakeEnricher.start(), FakeDialer.start()
    rules = FleetRules(sensors=20, window_seconds=60.0, clear_ratio=0.5)
    shard = start_shard(redis_client, keys, enricher, dialer=dialer, fleet=rules, clock=clock)
    opening = accept(redis_client, keys, *[alert(sensor=f"IN{n}") for n in range(25)])
    shard.tell(AlertBatch(alerts=tuple(opening)))
    ask(shard, Ping())
    assert [m.active for m in ask(dialer, Ping()) if isinstance(m, FleetIncident)] == [True]
    before = len(ask(enricher, "list"))

    later = accept(
        redis_client,
        keys,
        alert(sensor="IN-crit"),  # temp_critical: critical
        alert(sensor="IN-low", alert_type="battery_low"),
        alert(sensor="IN-normal", alert_type="door_open"),
    )
    shard.tell(AlertBatch(alerts=tuple(later)))
    ask(shard, Ping())
    handed = [a.idempotency_key for a in ask(enricher, "list")[before:]]
    assert handed == [later[0].idempotency_key]
    batches = [m for m in ask(dialer, Ping()) if isinstance(m, WorkBatch)]
    tasks = [w for b in batches for w in b.works if isinstance(w, TaskIntent)]
    assert len(tasks) == sum(len(b.works) for b in batches)  # tasks, never calls
    assert [t.alert.idempotency_key for t in tasks] == [a.idempotency_key for a in later[1:]]
    assert {t.reason for t in tasks} == {Reason.FLEET_INCIDENT}


def snapshot(client: redis.Redis, keys: Keys, customer: str, sensor: str) -> dict[str, Any]:
    blob = client.get(keys.snapshot(customer, sensor))
    assert blob is not None, f"no snapshot of {sensor}"
    doc: dict[str, Any] = orjson.loads(blob)
    return doc


def test_a_batch_writes_the_snapshots_of_what_it_changed_without_waiting_for_the_tick(
    redis_client: redis.Redis, prefix: str
) -> None:
    keys = Keys(prefix)
    shard = start_shard(redis_client, keys, FakeEnricher.start(), cooldown_seconds=600)
    alerts = accept(redis_client, keys, *[alert(sensor=f"W{n}") for n in range(3)])
    shard.tell(AlertBatch(alerts=tuple(alerts)))
    assert ask(shard, EntityCountQuery()) == 3  # no tick, no stop
    for a in alerts:
        doc = snapshot(redis_client, keys, a.customer_id, a.sensor_id)
        assert doc["cooldownUntil"] >= time.time() + 590
        assert doc["windowKey"] == a.idempotency_key


def test_a_state_changed_after_its_batch_wrote_it_is_saved_by_the_tick(
    redis_client: redis.Redis, prefix: str
) -> None:
    keys = Keys(prefix)
    enricher = FakeEnricher.start()
    first = start_shard(redis_client, keys, enricher, cooldown_seconds=600)
    (a1,) = accept(redis_client, keys, alert(sensor="W9"))
    first.tell(AlertBatch(alerts=(a1,)))
    ask(first, Ping())
    first.stop()
    redis_client.delete(keys.snapshot(a1.customer_id, "W9"))  # lost: memory starts clean
    second = start_shard(redis_client, keys, enricher, cooldown_seconds=1200)
    (a2,) = accept(redis_client, keys, alert(sensor="W9"))
    second.tell(AlertBatch(alerts=(a2,)))
    ask(second, Ping())
    # The batch wrote the state it sent its claim with (a 1,200 s window); the claim lost to
    # a1's 600 s window, which memory learnt only from the reply: the tick writes that.
    assert status(redis_client, keys, a2.idempotency_key) == ("suppressed", "cooldown")
    written = snapshot(redis_client, keys, a1.customer_id, "W9")["cooldownUntil"]
    assert written >= time.time() + 1190
    second.tell(SnapshotTick())
    ask(second, Ping())
    until = snapshot(redis_client, keys, a1.customer_id, "W9")["cooldownUntil"]
    assert time.time() + 590 <= until <= time.time() + 600


def test_what_a_shard_suppresses_leaves_the_pending_index_with_its_next_round_trip(
    redis_client: redis.Redis, prefix: str
) -> None:
    keys = Keys(prefix)
    index = keys.pending("default")  # the accept helper's, and start_shard's
    shard = start_shard(redis_client, keys, FakeEnricher.start())
    first, *again = accept(redis_client, keys, *[alert(sensor="U1") for _ in range(3)])
    shard.tell(AlertBatch(alerts=(first, *again)))
    ask(shard, Ping())
    # Recorded as suppressed; not removed in the same round trip, which would run even if the
    # records failed.
    assert [status(redis_client, keys, a.idempotency_key)[0] for a in again] == ["suppressed"] * 2
    assert redis_client.zcard(index) == 3
    shard.tell(SnapshotTick())  # any next round trip
    ask(shard, Ping())
    assert redis_client.zrange(index, 0, -1) == [first.idempotency_key.encode()]  # still going


class CountingRedis(redis.Redis):
    """Remembers the keys of every MGET (a shard reads snapshots with one)."""

    mgets: list[list[str]]

    def mget(self, keys: Any, *args: Any) -> Any:
        self.mgets.append([text(k) for k in keys])
        return super().mget(keys, *args)


def counting_client() -> CountingRedis:
    client = CountingRedis(connection_pool=redis.ConnectionPool.from_url(REDIS_URL))
    client.mgets = []
    return client


def test_a_snapshot_read_with_the_record_spares_the_shard_its_own_read(
    redis_client: redis.Redis, prefix: str
) -> None:
    keys = Keys(prefix)
    (a,) = accept(redis_client, keys, alert(sensor="PF1"))
    # Redis now holds a window for the sensor; the read made with the record found none.
    held = SensorState(cooldown_until=time.time() + 3600)
    redis_client.set(keys.snapshot(a.customer_id, a.sensor_id), orjson.dumps(held.to_snapshot()))
    client = counting_client()
    enricher = FakeEnricher.start()
    shard = start_shard(client, keys, enricher)
    shard.tell(AlertBatch(alerts=(a,), snapshots={a.sensor_id: Snapshot(b"", time.monotonic())}))
    wait_for(lambda: ask(enricher, "list"))  # decided on the snapshot it was handed
    assert client.mgets == []
    client.connection_pool.disconnect()


def test_a_snapshot_read_before_the_shard_last_wrote_it_is_read_again(
    redis_client: redis.Redis, prefix: str
) -> None:
    keys = Keys(prefix)
    now = [time.time()]
    first, second = accept(redis_client, keys, alert(sensor="PF2"), alert(sensor="PF2"))
    snapshot_key = keys.snapshot(first.customer_id, "PF2")
    client = counting_client()
    enricher = FakeEnricher.start()
    shard = start_shard(client, keys, enricher, clock=lambda: now[0], passivate_after_seconds=1)
    read_before = Snapshot(b"", time.monotonic())  # e.g. recorded just before the tick below
    shard.tell(AlertBatch(alerts=(first,)))
    wait_for(lambda: ask(enricher, "list"))  # it proceeds: its window is now in memory
    now[0] += 5
    shard.tell(SnapshotTick())
    assert ask(shard, EntityCountQuery()) == 0  # idle: written to Redis and out of memory
    shard.tell(AlertBatch(alerts=(second,), snapshots={"PF2": read_before}))
    wait_for(lambda: status(redis_client, keys, second.idempotency_key)[0] != "")
    assert status(redis_client, keys, second.idempotency_key) == ("suppressed", "cooldown")
    assert client.mgets == [[snapshot_key], [snapshot_key]]  # read again, not taken as handed
    client.connection_pool.disconnect()


def test_an_alert_whose_keys_fail_becomes_a_task_and_the_shard_and_its_batch_go_on(
    redis_client: redis.Redis, prefix: str
) -> None:
    keys = Keys(prefix)
    enricher, dialer = FakeEnricher.start(), FakeDialer.start()
    dead = DeadLetters(
        client=redis_client, keys=keys, max_entries=100, registry=CollectorRegistry()
    )
    shard = start_shard(redis_client, keys, enricher, dialer=dialer, dead_letters=dead)
    before, poisoned, after = accept(
        redis_client,
        keys,
        alert(sensor="S-BEFORE"),
        alert(sensor="S-POISON", customer="C-P"),
        alert(sensor="S-AFTER"),
    )
    # Its cooldown key holds a list: the claim answers WRONGTYPE (as colliding ids once did).
    redis_client.rpush(keys.cooldown("C-P", "S-POISON"), "not a cooldown")
    shard.tell(AlertBatch(alerts=(before, poisoned, after)))
    assert ask(shard, Ping()) is not None  # alive: the failure was the alert's, not the shard's

    handed = [a.idempotency_key for a in ask(enricher, "list")]
    assert handed == [before.idempotency_key, after.idempotency_key]
    (task,) = [m for m in ask(dialer, Ping()) if isinstance(m, TaskIntent)]
    assert task.alert.idempotency_key == poisoned.idempotency_key
    assert task.reason == Reason.INTERNAL_ERROR
    assert "WRONGTYPE" in task.detail
    (entry,) = dead.recent()
    assert (entry["source"], entry["idempotencyKey"]) == ("shard", poisoned.idempotency_key)
    # The next alert of a healthy sensor is decided as ever.
    (later,) = accept(redis_client, keys, alert(sensor="S-LATER"))
    shard.tell(AlertBatch(alerts=(later,)))
    ask(shard, Ping())
    assert ask(enricher, "list")[-1].idempotency_key == later.idempotency_key


def test_an_unreadable_snapshot_starts_the_sensor_clean(
    redis_client: redis.Redis, prefix: str
) -> None:
    keys = Keys(prefix)
    enricher = FakeEnricher.start()
    shard = start_shard(redis_client, keys, enricher)
    redis_client.set(keys.snapshot("CUST-9981", "S-CORRUPT"), b"{not json")
    (one,) = accept(redis_client, keys, alert(sensor="S-CORRUPT"))
    shard.tell(AlertBatch(alerts=(one,)))
    ask(shard, Ping())
    assert [a.idempotency_key for a in ask(enricher, "list")] == [one.idempotency_key]


class FlakyPool(redis.ConnectionPool):
    """Refuses every connection while `down` is set: Redis away, as the shard meets it."""

    down = False

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        if self.down:
            raise redis.ConnectionError("Redis is away (test)")
        return super().get_connection(*args, **kwargs)


def test_an_outage_parks_the_batch_without_holding_the_shard_and_keeps_the_order(
    redis_client: redis.Redis, prefix: str
) -> None:
    keys = Keys(prefix)
    pool = FlakyPool.from_url(REDIS_URL)
    flaky = redis.Redis(connection_pool=pool)
    try:
        enricher = FakeEnricher.start()
        shard = start_shard(
            flaky, keys, enricher, outage=Backoff(first=0.05, cap=0.2, attempts=100)
        )
        first, second = accept(redis_client, keys, alert(sensor="S-out"), alert(sensor="S-out"))
        (other,) = accept(redis_client, keys, alert(sensor="S-other"))
        pool.down = True
        for batch in (first, second, other):
            shard.tell(AlertBatch(alerts=(batch,)))
        time.sleep(0.3)  # several tries failed meanwhile
        # The thread answers at once (it slept between tries, ~9 s in all, before).
        assert ask(shard, EntityCountQuery(), timeout=1) == 0
        assert ask(enricher, "list") == []  # nothing decided without Redis
        pool.down = False
        wait_for(lambda: len(ask(enricher, "list")) == 2)
        handed = [a.idempotency_key for a in ask(enricher, "list")]
        assert handed == [first.idempotency_key, other.idempotency_key]  # in the order they came
        assert status(redis_client, keys, second.idempotency_key) == ("suppressed", "cooldown")
    finally:
        pykka.ActorRegistry.stop_all()
        flaky.close()
        pool.disconnect()


def test_an_outage_past_the_tries_is_the_shards_failure(
    redis_client: redis.Redis, prefix: str
) -> None:
    keys = Keys(prefix)
    pool = FlakyPool.from_url(REDIS_URL)
    flaky = redis.Redis(connection_pool=pool)
    try:
        shard = start_shard(
            flaky, keys, FakeEnricher.start(), outage=Backoff(first=0.01, cap=0.01, attempts=3)
        )
        (a,) = accept(redis_client, keys, alert(sensor="S-gone"))
        pool.down = True
        shard.tell(AlertBatch(alerts=(a,)))
        wait_for(lambda: not shard.is_alive(), timeout=5)  # the supervisor replaces it
        assert "ConnectionError" in (FAILURES.last(shard.actor_urn) or "")
        assert status(redis_client, keys, a.idempotency_key) == ("", "")  # left to the sweep
    finally:
        pykka.ActorRegistry.stop_all()
        flaky.close()
        pool.disconnect()
