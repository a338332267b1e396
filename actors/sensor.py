"""Shard actors hosting sensor entities: suppress (cooldown, resolved), then hand over to enrich."""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

import orjson
import pykka
import redis

from actors import Supervised
from conf.schema import SensorConfig
from messages import (
    Alert,
    AlertBatch,
    EnrichBatch,
    Outcome,
    Ping,
    Reason,
    SnapshotTick,
)
from pipeline.suppress import Proceed, SensorState, Suppressed, suppress
from tripline.stats import Stats
from tripline.store import (
    COOLDOWN_LUA,
    FROM_PENDING,
    TRANSITION_LUA,
    Keys,
    PipelinedScript,
    execute,
    transition_args,
)

log = logging.getLogger("tripline.sensor")

_REDIS_ATTEMPTS = 8  # ~13 s of backoff: ride out a Redis failover, then let the supervisor act


def shard_of(sensor_id: str, shards: int) -> int:
    """The shard hosting a sensor: crc32 is stable across processes, unlike the salted hash()."""
    return zlib.crc32(sensor_id.encode()) % shards


@dataclass(slots=True)
class SensorEntity:
    """One sensor's state: the per-sensor actor, minus the thread."""

    customer_id: str
    state: SensorState
    dirty: bool = False
    seen_at: float = 0.0


class SensorShard(Supervised, pykka.ThreadingActor):
    """Hosts the sensor entities whose crc32(sensorId) falls in this shard; runs their stages."""

    def __init__(
        self,
        *,
        shard: int,
        conf: SensorConfig,
        client: redis.Redis,
        keys: Keys,
        record_ttl: int,
        enricher: Callable[[], pykka.ActorRef[Any]],
        stats: Stats,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Keep collaborators; the enricher is a resolver, so it survives its restarts."""
        super().__init__()
        self.shard, self._conf, self._redis, self._keys = shard, conf, client, keys
        self._ttl, self._enricher, self._stats, self._clock = record_ttl, enricher, stats, clock
        self._entities: dict[str, SensorEntity] = {}
        self._max = max(1, conf.max_entities // conf.shards)
        self._cooldown = PipelinedScript(client, COOLDOWN_LUA)
        self._transition = PipelinedScript(client, TRANSITION_LUA)

    def on_stop(self) -> None:
        """Write a final snapshot of every dirty entity."""
        try:
            self._snapshot(e for e in self._entities.items() if e[1].dirty)
        except redis.RedisError:
            log.warning("shard %d: final snapshot failed", self.shard, exc_info=True)

    def on_receive(self, message: Any) -> Any:  # noqa: ANN401
        """Dispatch one message."""
        match message:
            case AlertBatch():
                self._on_alerts(message.alerts)
            case SnapshotTick():
                self._on_tick()
            case Ping():
                return len(self._entities)
            case _:
                return super().on_receive(message)
        return None

    @property
    def entity_count(self) -> int:
        """Entities held in memory."""
        return len(self._entities)

    def _on_alerts(self, alerts: tuple[Alert, ...]) -> None:
        now = self._clock()
        self._activate(alerts, now)
        decided: list[tuple[Alert, Suppressed]] = []
        claims: list[Alert] = []
        for alert in alerts:
            entity = self._entities[alert.sensor_id]
            entity.state, decision = suppress(
                entity.state, alert, now=now, cooldown=self._conf.cooldown_seconds
            )
            entity.dirty, entity.seen_at = True, now
            if isinstance(decision, Proceed):
                claims.append(alert)
            else:
                decided.append((alert, decision))
        proceed = self._claim_cooldowns(claims, decided, now)
        self._record_suppressed(decided, now)
        if proceed:
            self._enricher().tell(EnrichBatch(alerts=tuple(proceed)))
        # The cap applies after the batch, so no entity leaves while its alert is in hand.
        if len(self._entities) > self._max:
            self._passivate(len(self._entities) - self._max)

    def _activate(self, alerts: Iterable[Alert], now: float) -> None:
        """Load the snapshots of sensors not in memory, in one round trip."""
        missing = {a.sensor_id: a.customer_id for a in alerts if a.sensor_id not in self._entities}
        if not missing:
            return
        ids = list(missing)
        raw = self._retry(
            lambda: self._redis.mget([self._keys.snapshot(missing[s], s) for s in ids])
        )
        for sensor_id, blob in zip(ids, raw, strict=True):
            state = SensorState.from_snapshot(orjson.loads(blob)) if blob else SensorState()
            self._entities[sensor_id] = SensorEntity(missing[sensor_id], state, seen_at=now)

    def _claim_cooldowns(
        self, claims: list[Alert], decided: list[tuple[Alert, Suppressed]], now: float
    ) -> list[Alert]:
        """Claim each sensor's window atomically in Redis (holds across restarts and instances)."""
        if not claims:
            return []
        ttl_ms = max(1, int(self._conf.cooldown_seconds * 1000))

        def run() -> list[Any]:
            pipe = self._redis.pipeline(transaction=False)
            for alert in claims:
                self._cooldown.queue(
                    pipe,
                    [self._keys.cooldown(alert.customer_id, alert.sensor_id)],
                    [alert.idempotency_key, ttl_ms],
                )
            return execute(pipe, self._cooldown)

        results = self._retry(run)
        proceed = []
        for alert, (ok, pttl) in zip(claims, results, strict=True):
            if ok == 1:
                proceed.append(alert)
                continue
            until = now + max(0, int(pttl)) / 1000
            entity = self._entities[alert.sensor_id]
            entity.state = replace(entity.state, cooldown_until=until)
            decided.append((alert, Suppressed(Reason.COOLDOWN, until)))
        return proceed

    def _record_suppressed(self, decided: list[tuple[Alert, Suppressed]], now: float) -> None:
        if not decided:
            return
        pipe = self._redis.pipeline(transaction=False)
        for alert, decision in decided:
            detail = (
                f"cooldown until {time.strftime('%H:%M:%SZ', time.gmtime(decision.until))}"
                if decision.reason == Reason.COOLDOWN
                else ""
            )
            keys, args = transition_args(
                self._keys,
                alert.idempotency_key,
                state=Outcome.SUPPRESSED,
                now=now,
                reason=decision.reason,
                allowed_from=FROM_PENDING,
                detail=detail,
            )
            self._transition.queue(pipe, keys, args)
        results = self._retry(lambda: execute(pipe, self._transition))
        for (_, decision), applied in zip(decided, results, strict=True):
            if applied == 1:
                self._stats.count(Outcome.SUPPRESSED, decision.reason)

    def _on_tick(self) -> None:
        now = self._clock()
        self._snapshot((s, e) for s, e in self._entities.items() if e.dirty)
        idle = [
            s
            for s, e in self._entities.items()
            if now - e.seen_at > self._conf.passivate_after_seconds
        ]
        for sensor_id in idle:
            del self._entities[sensor_id]

    def _passivate(self, count: int) -> None:
        """Drop the `count` least recently seen entities, snapshotting them first."""
        victims = sorted(self._entities.items(), key=lambda item: item[1].seen_at)[:count]
        self._snapshot((s, e) for s, e in victims if e.dirty)
        for sensor_id, _ in victims:
            del self._entities[sensor_id]

    def _snapshot(self, entities: Iterable[tuple[str, SensorEntity]]) -> None:
        pipe = self._redis.pipeline(transaction=False)
        written = []
        for sensor_id, entity in entities:
            pipe.set(
                self._keys.snapshot(entity.customer_id, sensor_id),
                orjson.dumps(entity.state.to_snapshot()),
                ex=self._ttl,
            )
            written.append(entity)
        if written:
            self._retry(pipe.execute)
            for entity in written:
                entity.dirty = False

    def _retry(self, fn: Callable[[], Any]) -> Any:  # noqa: ANN401
        """Run a Redis step, riding out a short outage with backoff; then give up loudly."""
        for attempt in range(_REDIS_ATTEMPTS):
            try:
                return fn()
            except (redis.ConnectionError, redis.TimeoutError):
                if attempt == _REDIS_ATTEMPTS - 1:
                    raise
                log.warning("shard %d: Redis unavailable, retrying", self.shard)
                time.sleep(min(0.1 * 2**attempt, 3.0))
        return None  # pragma: no cover
