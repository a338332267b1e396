"""The webhook's intake: requests in flight share a round trip and are routed together."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any, cast

import orjson
import redis

from tests.conftest import REDIS_URL, alert
from tripline.adapters.store import Keys
from tripline.conf.schema import RedisConfig
from tripline.edge.handoff import decode
from tripline.edge.intake import Intake
from tripline.messages import Alert, Priority, Snapshot
from tripline.pipeline.prioritise import PriorityRules
from tripline.pipeline.validate import Limits
from tripline.service.accept import Accepted, Acceptor, Duplicate
from tripline.service.stats import Stats


class FakeService:
    """What the intake uses of a Service: its acceptor, Redis URL, stats and route_async."""

    def __init__(
        self, client: redis.Redis, prefix: str, *, fail: bool = False, handoff: bool = False
    ) -> None:
        self.stats = Stats()
        self.keys = Keys(prefix)
        self.clock = time.time
        self.acceptor = Acceptor(
            client=client,
            keys=Keys(prefix),
            limits=Limits(),
            rules=PriorityRules.from_config("normal", {"co_alarm": "critical"}, {}),
            record_ttl=3600,
            stats=self.stats,
            clock=time.time,
        )
        self.config = SimpleNamespace(
            redis=RedisConfig(url=REDIS_URL),
            http=SimpleNamespace(route_linger_ms=20.0, handoff=handoff, handoff_max_wait_ms=250.0),
        )
        self.routed: list[list[Alert]] = []
        self.snapshots: list[dict[str, Snapshot]] = []
        self.times: list[float] = []  # the loop's clock at each hand-off
        self.fail = fail

    async def route_async(
        self, alerts: list[Alert], snapshots: Mapping[str, Snapshot] | None = None
    ) -> None:
        self.routed.append(alerts)
        self.times.append(asyncio.get_running_loop().time())
        self.snapshots.append(dict(snapshots or {}))
        if self.fail:
            raise RuntimeError("no shard")


def run(service: FakeService, bodies: list[bytes], *, others_idle: bool = False) -> list[Any]:
    async def go() -> list[Any]:
        intake = Intake(cast("Any", service))
        intake.door.others_idle = others_idle  # another door said it was idle
        try:
            return list(await asyncio.gather(*(intake.accept(b) for b in bodies)))
        finally:
            await intake.aclose()

    return asyncio.run(go())


def test_alerts_accepted_together_are_routed_together_critical_first_on_their_own(
    redis_client: redis.Redis, prefix: str
) -> None:
    service = FakeService(redis_client, prefix)
    docs = [alert(sensor=f"S-{n}") for n in range(8)]
    critical = alert(sensor="S-CO", alert_type="co_alarm")
    bodies = [orjson.dumps(d) for d in [*docs, critical, docs[0]]]
    verdicts = run(service, bodies)
    assert all(isinstance(v, Accepted) for v in verdicts[:9])
    assert isinstance(verdicts[9], Duplicate)  # the same key again: recorded once, not routed
    # The critical alert first, in a batch of its own (each stage's inbox lets it pass), then
    # the others together, in their order.
    critical_batch, rest = service.routed
    assert [a.sensor_id for a in critical_batch] == ["S-CO"]
    assert critical_batch[0].priority == Priority.CRITICAL
    assert [a.sensor_id for a in rest] == [d["sensorId"] for d in docs]
    # The critical alert's snapshot was read with its record (none stored yet): its shard
    # need not read it again.
    assert list(service.snapshots[0]) == ["S-CO"]
    assert service.snapshots[0]["S-CO"].blob == b""
    keys = Keys(prefix)
    assert all(redis_client.exists(keys.record(d["idempotencyKey"])) for d in [*docs, critical])


def test_a_routing_failure_is_counted_and_the_alerts_stay_accepted(
    redis_client: redis.Redis, prefix: str
) -> None:
    service = FakeService(redis_client, prefix, fail=True)
    doc = alert()
    (verdict,) = run(service, [orjson.dumps(doc)])
    assert isinstance(verdict, Accepted)  # recorded: the resume sweep routes it later
    assert service.routed
    assert service.stats.total("route_failed") == 1
    pending = Keys(prefix).pending("default")
    assert redis_client.zscore(pending, doc["idempotencyKey"]) is not None


def test_under_load_alerts_wait_for_the_linger_and_a_critical_one_takes_them_at_once(
    redis_client: redis.Redis, prefix: str
) -> None:
    service = FakeService(redis_client, prefix)
    service.config.http.route_linger_ms = 200.0

    async def go() -> float:
        intake = Intake(cast("Any", service))
        started = asyncio.get_running_loop().time()
        try:
            await intake.accept(orjson.dumps(alert(sensor="S-IDLE")))
            await asyncio.sleep(0.01)  # handed on at once: nothing was handed on before
            await intake.accept(orjson.dumps(alert(sensor="S-LATER-1")))
            await intake.accept(orjson.dumps(alert(sensor="S-LATER-2")))
            await asyncio.sleep(0.25)  # both wait out the linger, then go together
            await intake.accept(orjson.dumps(alert(sensor="S-WAITS")))
            await intake.accept(orjson.dumps(alert(sensor="S-CO", alert_type="co_alarm")))
            await asyncio.sleep(0.01)  # the critical one goes at once, and takes the other
        finally:
            await intake.aclose()
        return started

    started = asyncio.run(go())
    assert [[a.sensor_id for a in alerts] for alerts in service.routed] == [
        ["S-IDLE"],
        ["S-LATER-1", "S-LATER-2"],
        ["S-CO"],
        ["S-WAITS"],
    ]
    idle, later, critical, _ = (t - started for t in service.times)
    assert idle < 0.1
    assert later >= 0.2  # the linger after the first hand-off
    assert critical - later < 0.2  # the critical alert did not wait out a linger


# -- the hand-off (tripline/edge/handoff.py) ---------------------------------------------------


def handed_off(client: redis.Redis, prefix: str) -> list[str]:
    """The sensors of what waits in the hand-off list, in order."""
    return [
        decode(entry)[1].sensor_id
        for entry in cast("list[bytes]", client.lrange(Keys(prefix).handoff(), 0, -1))
    ]


def test_a_busy_door_hands_its_alerts_off_and_keeps_the_critical_ones(
    redis_client: redis.Redis, prefix: str
) -> None:
    service = FakeService(redis_client, prefix, handoff=True)
    docs = [alert(sensor=f"S-{n}") for n in range(6)]
    critical = alert(sensor="S-CO", alert_type="co_alarm")

    async def go() -> None:
        intake = Intake(cast("Any", service))  # not started: no taker, the list keeps them
        intake.door.others_idle = True  # as its taker finds when another door said so
        try:
            await asyncio.gather(*(intake.accept(orjson.dumps(d)) for d in [*docs, critical]))
            await asyncio.sleep(0.05)  # the push rides the next round trip; let it land
        finally:
            await intake.aclose()

    asyncio.run(go())
    # The critical alert was routed here, at once, with its snapshot; the rest wait for an
    # idle door, in the order they were accepted.
    assert [[a.sensor_id for a in batch] for batch in service.routed] == [["S-CO"]]
    assert list(service.snapshots[0]) == ["S-CO"]
    assert handed_off(redis_client, prefix) == [d["sensorId"] for d in docs]
    assert service.stats.handoff_out._value.get() == len(docs)


def test_a_busy_door_with_no_idle_door_elsewhere_decides_its_alerts_itself(
    redis_client: redis.Redis, prefix: str
) -> None:
    # One worker, or every door busy: a hand-off would only delay the alerts until this door
    # took them back after handoff_max_wait_ms.
    service = FakeService(redis_client, prefix, handoff=True)
    docs = [alert(sensor=f"S-{n}") for n in range(6)]
    verdicts = run(service, [orjson.dumps(d) for d in docs])
    assert all(isinstance(v, Accepted) for v in verdicts)
    assert [a.sensor_id for batch in service.routed for a in batch] == [d["sensorId"] for d in docs]
    assert handed_off(redis_client, prefix) == []
    assert service.stats.handoff_out._value.get() == 0


def test_a_lone_request_is_routed_where_it_was_accepted(
    redis_client: redis.Redis, prefix: str
) -> None:
    service = FakeService(redis_client, prefix, handoff=True)
    (verdict,) = run(service, [orjson.dumps(alert(sensor="S-LONE"))], others_idle=True)
    assert isinstance(verdict, Accepted)
    assert [[a.sensor_id for a in batch] for batch in service.routed] == [["S-LONE"]]
    assert handed_off(redis_client, prefix) == []


def test_a_failed_hand_off_routes_the_alerts_here(redis_client: redis.Redis, prefix: str) -> None:
    service = FakeService(redis_client, prefix, handoff=True)
    # The list's key holds a string: the push fails (WRONGTYPE), the alerts are not lost.
    redis_client.set(Keys(prefix).handoff(), "not a list")
    docs = [alert(sensor=f"S-{n}") for n in range(4)]
    verdicts = run(service, [orjson.dumps(d) for d in docs], others_idle=True)
    assert all(isinstance(v, Accepted) for v in verdicts)
    routed = [a.sensor_id for batch in service.routed for a in batch]
    assert sorted(routed) == sorted(d["sensorId"] for d in docs)
    assert service.stats.handoff_out._value.get() == 0  # nothing reached the list


def test_an_idle_door_takes_what_a_busy_one_handed_off(
    redis_client: redis.Redis, prefix: str
) -> None:
    busy = FakeService(redis_client, prefix, handoff=True)
    idle = FakeService(redis_client, prefix, handoff=True)
    docs = [alert(sensor=f"S-{n}") for n in range(20)]

    async def go() -> None:
        taking = Intake(cast("Any", idle))
        taking.start()  # an idle door: its taker waits on the list
        accepting = Intake(cast("Any", busy))
        accepting.door.others_idle = True  # what its taker would have read
        try:
            await asyncio.sleep(0.05)
            await asyncio.gather(*(accepting.accept(orjson.dumps(d)) for d in docs))
            for _ in range(100):
                if sum(map(len, idle.routed)) == len(docs):
                    break
                await asyncio.sleep(0.02)
        finally:
            await accepting.aclose()
            await taking.aclose()

    asyncio.run(go())
    assert busy.routed == []  # the accepting door decided none of them
    assert [a.sensor_id for batch in idle.routed for a in batch] == [d["sensorId"] for d in docs]
    assert idle.stats.handoff_in._value.get() == len(docs)
    assert handed_off(redis_client, prefix) == []
