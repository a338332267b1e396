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
from tripline.edge.intake import Intake
from tripline.messages import Alert, Priority, Snapshot
from tripline.pipeline.prioritise import PriorityRules
from tripline.pipeline.validate import Limits
from tripline.service.accept import Accepted, Acceptor, Duplicate
from tripline.service.stats import Stats


class FakeService:
    """What the intake uses of a Service: its acceptor, Redis URL, stats and route_async."""

    def __init__(self, client: redis.Redis, prefix: str, *, fail: bool = False) -> None:
        self.stats = Stats()
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
            redis=RedisConfig(url=REDIS_URL), http=SimpleNamespace(route_linger_ms=20.0)
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


def run(service: FakeService, bodies: list[bytes]) -> list[Any]:
    async def go() -> list[Any]:
        intake = Intake(cast("Any", service))
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
