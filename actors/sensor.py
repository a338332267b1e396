"""Shard actors hosting sensor entities: flap detection, cooldown, resolved; then enrich.

Per batch a shard also counts its firing sensors into the fleet-wide window (Redis), so a mass
failure is seen by every shard and every instance alike.
"""

from __future__ import annotations

import itertools
import logging
import time
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import orjson
import pykka
import redis

from tripline.actors import Supervised
from tripline.actors._inbox import urgent_first_inbox
from tripline.actors._retry import Backoff, StepRunner, Steps, run_blocking, tell_later
from tripline.adapters.deadletter import DeadLetters
from tripline.adapters.redis_clients import SyncRedis
from tripline.adapters.redis_io import Batch, PipelinedScript, batch, execute, mget
from tripline.adapters.store import (
    COOLDOWN_LUA,
    FROM_PENDING,
    READING_LUA,
    TRANSITION_LUA,
    Keys,
    alert_to_dict,
    transition_args,
)
from tripline.conf.schema import SensorConfig
from tripline.messages import (
    Alert,
    AlertBatch,
    EnrichBatch,
    EntityCountQuery,
    FleetIncident,
    Outcome,
    Ping,
    Priority,
    Reason,
    SensorResolved,
    Snapshot,
    SnapshotTick,
    TaskIntent,
    WorkBatch,
)
from tripline.pipeline.flap import FlapChange, FlapRules, FlapState, observe
from tripline.pipeline.fleet import FleetRules, IncidentChange, incident_change
from tripline.pipeline.prioritise import critical_first
from tripline.pipeline.suppress import Proceed, SensorState, Suppressed, suppress
from tripline.service.controls import OperatorControls
from tripline.service.events import Events
from tripline.service.stats import Stats

log = logging.getLogger("tripline.sensor")

REDIS_OUTAGE = Backoff(first=0.1, cap=3.0, attempts=8)
"""8 tries of a Redis step, 9.1 s of waiting between them (each try's own timeout comes on top):
a failover is ridden out; past it the outage is the shard's, and the supervisor acts."""


READINGS_KEPT = 60  # per sensor, for the agent's chart
# A snapshot read when an alert was recorded is used this long at most (it normally arrives
# within milliseconds; an older read is simply done again).
_SNAPSHOT_TRUST = 30.0
_SNAPSHOT_CHUNK = 100  # snapshots per pipeline; alerts queued meanwhile go between chunks


def _reading(alert: Alert) -> dict[str, Any]:
    return {
        "at": alert.timestamp,
        "value": alert.current_value,
        "threshold": alert.threshold,
        "unit": alert.unit,
        "firing": alert.firing,
        "key": alert.idempotency_key,
    }


def _restore(sensor_id: str, blob: bytes | None) -> SensorState:
    """A sensor's state from its snapshot; an unreadable one starts clean.

    Redis still decides cooldown and grouping: the snapshot speeds them up and carries the
    flap history, which a clean start only forgets.
    """
    if not blob:
        return SensorState()
    try:
        return SensorState.from_snapshot(orjson.loads(blob))
    except orjson.JSONDecodeError:
        log.warning("sensor %r: unreadable snapshot, starting clean", sensor_id)
        return SensorState()


def shard_of(sensor_id: str, shards: int) -> int:
    """The shard hosting a sensor: crc32 is stable across processes, unlike the salted hash()."""
    return zlib.crc32(sensor_id.encode()) % shards


@dataclass(slots=True)
class SensorEntity:
    """One sensor's state: the per-sensor actor, minus the thread."""

    customer_id: str
    state: SensorState
    seen_at: float = 0.0


class SensorShard(Supervised, pykka.ThreadingActor):
    """Hosts the sensor entities whose crc32(sensorId) falls in this shard; runs their stages."""

    # The critical lane: a critical alert's batch goes ahead of those waiting (actors/_inbox.py).
    _create_actor_inbox = staticmethod(urgent_first_inbox)

    def __init__(
        self,
        *,
        shard: int,
        conf: SensorConfig,
        client: SyncRedis,
        keys: Keys,
        pending_key: str,
        record_ttl: int,
        enricher: Callable[[], pykka.ActorRef[Any]],
        dialer: Callable[[], pykka.ActorRef[Any]],
        stats: Stats,
        events: Events,
        fleet: FleetRules,
        maintenance: OperatorControls | None = None,
        dead_letters: DeadLetters | None = None,
        clock: Callable[[], float] = time.time,
        outage: Backoff = REDIS_OUTAGE,
    ) -> None:
        """Keep collaborators; enricher and dialer are resolvers, so they survive restarts.

        `pending_key`: the instance's index of undecided alerts, which what this shard decides
        leaves (tripline/service/resume.py). `outage`: how a Redis step is tried again.
        """
        super().__init__()
        self.shard, self._conf, self._redis, self._keys = shard, conf, client, keys
        self._pending_key = pending_key
        # Decided here and recorded: out of the pending index with the next round trip. Not in
        # the one that records them, where it would run even if the record failed.
        self._unindex: list[str] = []
        self._ttl, self._enricher, self._stats, self._clock = record_ttl, enricher, stats, clock
        self._dialer, self._events, self._fleet = dialer, events, fleet
        self._maintenance = maintenance or OperatorControls()
        self._dead = dead_letters
        self._flap = FlapRules(
            low=conf.flap_low_percent,
            high=conf.flap_high_percent,
            sample_seconds=conf.flap_sample_seconds,
        )
        self._incident = False  # this shard's view; Redis holds the fleet-wide truth
        # Least recently seen first (a touch moves an entity to the end): passivation takes
        # from the front instead of sorting or scanning every entity.
        self._entities: dict[str, SensorEntity] = {}
        self._dirty: set[str] = set()  # changed since their last snapshot
        # Sensors that left memory, and when (monotonic), oldest first, for as long as a
        # snapshot read elsewhere is trusted: one read before its sensor left is stale.
        self._removed: dict[str, float] = {}
        self._born = time.monotonic()  # snapshots read before this instance existed: stale
        self._flapping: set[str] = set()  # the tick's silent samples go to these only
        self._saving = 0  # dirty entities the current tick still has to write
        self._max = max(1, conf.max_entities // conf.shards)
        self._cooldown = PipelinedScript(client, COOLDOWN_LUA)
        self._transition = PipelinedScript(client, TRANSITION_LUA)
        self._reading = PipelinedScript(client, READING_LUA)
        # Work waiting out a Redis outage is parked, not slept on: the thread still answers,
        # stops, and keeps what arrives meanwhile in order behind it.
        self._outage = outage
        self._steps = StepRunner(
            backoff=outage,
            wake=lambda delay: tell_later(self.actor_ref, _Resume(), delay),
            name=f"shard {shard}",
        )

    def on_stop(self) -> None:
        """Write a final snapshot of every dirty entity, riding out a short outage.

        Nothing waits behind on_stop, so it may wait. Work still parked on an outage is
        dropped: its alerts are in the pending index, and the next start's sweep resumes them.
        """
        try:
            run_blocking(self._snapshot(list(self._dirty)), self._outage)
        except redis.RedisError:
            log.warning("shard %d: final snapshot failed", self.shard, exc_info=True)

    def on_receive(self, message: Any) -> Any:  # noqa: ANN401
        """Dispatch one message."""
        match message:
            case AlertBatch():
                work = self._decide(message.alerts, message.snapshots)
                if self._steps.waiting:
                    self._steps.run(work)  # held, in order, behind what waits for Redis
                else:
                    with self._stats.stage_seconds.labels("sensor").time():
                        self._steps.run(work)
            case SnapshotTick():
                self._steps.run(self._on_tick())
            case _SaveMore():
                self._steps.run(self._save_some())
            case _Resume():
                self._steps.resume()
            case Ping():
                return True
            case EntityCountQuery():
                return len(self._entities)
            case _:
                return super().on_receive(message)
        return None

    def _decide(self, alerts: tuple[Alert, ...], snapshots: Mapping[str, Snapshot]) -> Steps[None]:
        """Decide a batch; an alert our side fails on becomes its own outcome, not our death.

        The isolation boundary: Redis being away (past the retries) is this actor's failure —
        the supervisor restarts it and the sweep resumes the alerts. Anything else is about
        some alert of the batch: its alerts are decided again one at a time (a replay, which
        the records' state machine and the re-entrant cooldown claim make safe), and the one
        that still fails is handed to a person as deferred/internal_error.
        """
        try:
            yield from self._on_alerts(alerts, snapshots)
        except (redis.ConnectionError, redis.TimeoutError, redis.exceptions.NoScriptError):
            raise  # Redis' failure (a lost script too), not the alerts': the restart and sweep
        except Exception as exc:
            if len(alerts) == 1:
                self._quarantine(alerts[0], exc)
                return
            log.exception(
                "shard %d: a batch of %d failed; deciding them one at a time",
                self.shard,
                len(alerts),
            )
            for alert in alerts:
                yield from self._decide((alert,), snapshots)

    def _quarantine(self, alert: Alert, exc: Exception) -> None:
        error = f"{type(exc).__name__}: {exc}"
        log.error("shard %d: deciding %s failed: %s", self.shard, alert.idempotency_key, error)
        # What the sensor's memory holds may be half-updated by the failed attempt: let it go,
        # the snapshot in Redis is what the next alert starts from.
        self._entities.pop(alert.sensor_id, None)
        self._dirty.discard(alert.sensor_id)
        if self._dead is not None:
            self._dead.add(
                "shard",
                error=error,
                payload=orjson.dumps(alert_to_dict(alert)),
                key=alert.idempotency_key,
            )
        self._dialer().tell(
            TaskIntent(
                alert=alert,
                reason=Reason.INTERNAL_ERROR,
                due=self._clock(),
                detail=f"deciding this alert failed: {error}"[:300],
            )
        )

    def _on_alerts(
        self, alerts: tuple[Alert, ...], snapshots: Mapping[str, Snapshot] | None = None
    ) -> Steps[None]:
        now = self._clock()
        yield from self._activate(alerts, now, snapshots or {})
        decided: list[tuple[Alert, Suppressed]] = []
        claims: list[Alert] = []
        episodes: list[Alert] = []
        for alert in alerts:
            entity = self._entities.pop(alert.sensor_id)
            self._entities[alert.sensor_id] = entity  # now the most recently seen
            entity.seen_at = now
            if not alert.firing:
                # Waiting non-critical calls of this sensor are cancelled, flapping or not.
                self._dialer().tell(
                    SensorResolved(
                        sensor_id=alert.sensor_id,
                        idempotency_key=alert.idempotency_key,
                        timestamp=alert.timestamp,
                        customer_id=alert.customer_id,
                    )
                )
            if (window := self._maintenance.covering(alert, now)) is not None:
                # Being worked on: no call, no cooldown claimed, and no flap sample either —
                # a technician's toggling is not the sensor flapping.
                entity.state = replace(entity.state, firing=alert.firing, last_alert_at=now)
                self._dirty.add(alert.sensor_id)
                decided.append((alert, Suppressed(Reason.MAINTENANCE, detail=window.detail())))
                continue
            flap, change = yield from self._sample(alert.sensor_id, entity, alert.firing, now)
            if flap.flapping:
                # No call per transition: the episode gets one maintenance task, nothing more.
                entity.state = replace(entity.state, firing=alert.firing, last_alert_at=now)
                if change == FlapChange.STARTED:
                    episodes.append(alert)
                else:
                    decided.append((alert, Suppressed(Reason.FLAPPING)))
                continue
            entity.state, decision = suppress(
                entity.state, alert, now=now, cooldown=self._conf.cooldown_seconds
            )
            if isinstance(decision, Proceed):
                claims.append(alert)
            else:
                decided.append((alert, decision))
        yield from self._start_episodes(episodes, decided, now)
        proceed = yield from self._round_trip(alerts, claims, decided, now)
        if self._incident:
            proceed = self._incident_tasks(proceed, now)
        self._enrich(proceed)
        # The cap applies after the batch, so no entity leaves while its alert is in hand.
        if len(self._entities) > self._max:
            yield from self._passivate(len(self._entities) - self._max)

    def _enrich(self, alerts: list[Alert]) -> None:
        """Hand alerts to the enricher; critical ones in a batch of their own, ahead.

        The enricher's inbox lets that batch pass the ones waiting there (the critical lane,
        actors/_inbox.py).
        """
        for part in critical_first(alerts, _critical, _sensor_of):
            if part:
                self._enricher().tell(EnrichBatch(alerts=tuple(part)))

    def _incident_tasks(self, alerts: list[Alert], now: float) -> list[Alert]:
        """During a fleet incident only critical alerts go on to be called.

        The rest become tasks here, without a CRM lookup each: the storm that opened the
        incident must not become a CRM storm too. Returns the alerts that still proceed.
        """
        tasks = tuple(
            TaskIntent(
                alert=a,
                reason=Reason.FLEET_INCIDENT,
                due=now,
                detail="fleet incident: only critical alerts are called",
            )
            for a in alerts
            if a.priority != Priority.CRITICAL
        )
        if tasks:
            self._dialer().tell(WorkBatch(works=tasks))
        return [a for a in alerts if a.priority == Priority.CRITICAL]

    def _start_episodes(
        self, alerts: list[Alert], decided: list[tuple[Alert, Suppressed]], now: float
    ) -> Steps[None]:
        """A flap episode started: one maintenance task per episode, even across restarts."""
        if not alerts:
            return

        def build(pipe: Batch) -> None:
            for alert in alerts:
                pipe.set(
                    self._keys.flap_task(alert.customer_id, alert.sensor_id),
                    alert.idempotency_key,
                    nx=True,
                    ex=self._ttl,
                )

        claimed = yield from self._pipelined(build)
        for alert, first in zip(alerts, claimed, strict=True):
            percent = self._entities[alert.sensor_id].state.flap.percent
            self._events.emit(
                FlapChange.STARTED.value,
                sensorId=alert.sensor_id,
                customerId=alert.customer_id,
                percentStateChange=round(percent, 1),
                idempotencyKey=alert.idempotency_key,
            )
            if not first:  # a restart re-detected an episode whose task exists
                decided.append((alert, Suppressed(Reason.FLAPPING)))
                continue
            detail = (
                f"sensor flapping ({percent:.1f} % weighted state change): no call per "
                "transition; maintenance task raised, the hardware is suspect"
            )
            self._dialer().tell(
                TaskIntent(
                    alert=alert,
                    reason=Reason.FLAPPING,
                    due=now,
                    detail=detail,
                    facts=(("percentStateChange", round(percent, 1)),),
                    outcome=Outcome.SUPPRESSED,
                )
            )

    def _flap_stopped(self, sensor_id: str, entity: SensorEntity) -> Steps[None]:
        """The sensor settled: a later episode may raise its own task."""
        task = self._keys.flap_task(entity.customer_id, sensor_id)
        yield lambda: self._redis.delete(task)
        self._events.emit(
            FlapChange.STOPPED.value,
            sensorId=sensor_id,
            customerId=entity.customer_id,
            percentStateChange=round(entity.state.flap.percent, 1),
        )

    def _round_trip(
        self,
        alerts: tuple[Alert, ...],
        claims: list[Alert],
        decided: list[tuple[Alert, Suppressed]],
        now: float,
    ) -> Steps[list[Alert]]:
        """The batch's one round trip (and a second only to record claims that lost).

        One pipeline carries the readings, the fleet count, the cooldown claims, the records
        of what memory already suppressed and the snapshots of the states the batch changed.
        Returns the alerts that proceed to enrichment.

        The snapshots ride here rather than wait for the tick: written at the tick, every
        entity a busy interval changed would go in one burst, and a critical alert queued
        behind it in any stage would wait (README "Performance"). Here each costs a SET in a
        round trip that is made anyway.
        """
        claiming = claims if self._conf.cooldown_seconds else []  # 0: no window to claim
        ttl_ms = int(self._conf.cooldown_seconds * 1000)
        known = list(decided)
        fleet_commands = 0
        changed = list(dict.fromkeys(a.sensor_id for a in alerts if a.sensor_id in self._dirty))
        saved: dict[str, SensorState] = {}

        def build(pipe: Batch) -> None:
            nonlocal fleet_commands
            self._queue_fleet(pipe, [a.sensor_id for a in alerts if a.firing], now, alerts)
            fleet_commands = len(pipe.command_stack)
            for alert in claiming:
                self._cooldown.queue(
                    pipe,
                    [self._keys.cooldown(alert.customer_id, alert.sensor_id)],
                    [alert.idempotency_key, ttl_ms],
                )
            self._queue_suppressed(pipe, known, now)
            saved.update(self._queue_snapshots(pipe, changed))  # last: their replies unread

        results = (yield from self._pipelined(build))[: -len(changed) or None]
        self._saved(saved)
        fleet, rest = results[:fleet_commands], results[fleet_commands:]
        yield from self._on_fleet_count(int(fleet[-1]), now)
        claimed, recorded = rest[: len(claiming)], rest[len(claiming) :]
        self._count_suppressed(known, recorded, now)
        # Without a window to claim every claim proceeds, with no test per alert: `a not in
        # claiming` compares whole alerts field by field, pairwise (2-4 % of a drain).
        proceed = [] if claiming else list(claims)
        lost: list[tuple[Alert, Suppressed]] = []
        for alert, (ok, pttl) in zip(claiming, claimed, strict=True):
            if ok == 1:
                proceed.append(alert)
                continue
            until = now + max(0, int(pttl)) / 1000
            entity = self._entities[alert.sensor_id]
            entity.state = replace(entity.state, cooldown_until=until)
            self._dirty.add(alert.sensor_id)  # after this batch's snapshot: the tick's
            lost.append((alert, Suppressed(Reason.COOLDOWN, until)))
        if lost:
            applied = yield from self._pipelined(
                lambda pipe: self._queue_suppressed(pipe, lost, now)
            )
            self._count_suppressed(lost, applied, now)
        return proceed

    def _pipelined(self, build: Callable[[Batch], None]) -> Steps[list[Any]]:
        """Build and run one pipeline, built anew for every retry (a failed one is spent)."""

        def run() -> list[Any]:
            pipe = batch(self._redis)
            build(pipe)
            unindex = len(self._unindex)
            if unindex:
                pipe.zrem(self._pending_key, *self._unindex)
            results = execute(pipe, self._cooldown, self._transition, self._reading)
            del self._unindex[:unindex]
            return results[: -1 if unindex else None]

        return list((yield run))

    def _queue_fleet(
        self,
        pipe: Batch,
        firing: list[str],
        now: float,
        readings: tuple[Alert, ...] = (),
    ) -> None:
        """Readings for the agent's chart; firing sensors into the fleet window; its count last."""
        key = self._keys.fleet_sensors()
        window = self._fleet.window_seconds
        for alert in readings:
            self._reading.queue(
                pipe,
                [self._keys.readings(alert.customer_id, alert.sensor_id)],
                [orjson.dumps(_reading(alert)), READINGS_KEPT, self._ttl],
            )
        if firing:
            pipe.zadd(key, dict.fromkeys(firing, now))
            pipe.expire(key, int(window) + 60)
        pipe.zremrangebyscore(key, "-inf", now - window)
        pipe.zcard(key)

    def _on_fleet_count(self, count: int, now: float) -> Steps[None]:
        """Open or close the fleet incident on this count of distinct firing sensors."""
        window = self._fleet.window_seconds
        change = incident_change(self._incident, count, self._fleet)
        if change == IncidentChange.NONE:
            return
        incident = self._keys.fleet_incident()
        if change == IncidentChange.STARTED:
            doc = orjson.dumps({"since": now, "sensors": count})
            opened = yield lambda: self._redis.set(incident, doc, nx=True, ex=self._ttl)
            since = now
            if opened:
                self._events.emit(
                    change.value,
                    sensors=count,
                    threshold=self._fleet.sensors,
                    windowSeconds=window,
                    detail="critical alerts still dial; other alerts become tasks",
                )
            elif (raw := (yield lambda: self._redis.get(incident))) is not None:
                since = float(orjson.loads(raw).get("since", now))  # opened by a peer
            self._incident = True
            self._dialer().tell(FleetIncident(active=True, since=since, sensors=count))
            return
        if (yield lambda: self._redis.delete(incident)):
            self._events.emit(change.value, sensors=count, threshold=self._fleet.sensors)
        self._incident = False
        self._dialer().tell(FleetIncident(active=False, since=0.0, sensors=count))

    def _activate(
        self, alerts: Iterable[Alert], now: float, snapshots: Mapping[str, Snapshot]
    ) -> Steps[None]:
        """Load the snapshots of sensors not in memory, in one round trip.

        Not for those whose snapshot was read when their alert was recorded (a critical
        alert's: a round trip less on its way), unless this shard wrote it since.
        """
        missing = {a.sensor_id: a.customer_id for a in alerts if a.sensor_id not in self._entities}
        if not missing:
            return
        read = {s: snap.blob for s in missing if (snap := self._fresh(s, snapshots))}
        ids = [s for s in missing if s not in read]
        keys = [self._keys.snapshot(missing[s], s) for s in ids]
        raw = (yield lambda: mget(self._redis, keys)) if ids else []
        for sensor_id, blob in [*zip(ids, raw, strict=True), *read.items()]:
            state = _restore(sensor_id, blob)
            self._entities[sensor_id] = SensorEntity(missing[sensor_id], state, seen_at=now)
            self._note_flapping(sensor_id, state.flap.flapping)

    def _sample(
        self, sensor_id: str, entity: SensorEntity, firing: bool | None, now: float
    ) -> Steps[tuple[FlapState, FlapChange]]:
        """One flap-detector sample: an alert's state, or None for a silent interval."""
        flap, change = observe(entity.state.flap, firing, now=now, rules=self._flap)
        entity.state = replace(entity.state, flap=flap)
        self._dirty.add(sensor_id)
        self._note_flapping(sensor_id, flap.flapping)
        if change == FlapChange.STOPPED:
            yield from self._flap_stopped(sensor_id, entity)
        return flap, change

    def _note_flapping(self, sensor_id: str, flapping: bool) -> None:
        if flapping:
            self._flapping.add(sensor_id)
        else:
            self._flapping.discard(sensor_id)

    def _queue_suppressed(
        self, pipe: Batch, decided: list[tuple[Alert, Suppressed]], now: float
    ) -> None:
        for alert, decision in decided:
            keys, args = transition_args(
                self._keys,
                alert.idempotency_key,
                state=Outcome.SUPPRESSED,
                now=now,
                reason=decision.reason,
                allowed_from=FROM_PENDING,
                detail=self._detail(alert, decision),
            )
            self._transition.queue(pipe, keys, args)

    def _count_suppressed(
        self, decided: list[tuple[Alert, Suppressed]], applied: list[Any], now: float
    ) -> None:
        for (alert, decision), done in zip(decided, applied, strict=True):
            if done == 1:
                self._stats.decided(alert, Outcome.SUPPRESSED, decision.reason, now=now)
                self._unindex.append(alert.idempotency_key)

    def _detail(self, alert: Alert, decision: Suppressed) -> str:
        if decision.detail:
            return decision.detail
        if decision.reason == Reason.COOLDOWN:
            return f"cooldown until {time.strftime('%H:%M:%SZ', time.gmtime(decision.until))}"
        if decision.reason == Reason.FLAPPING:
            flap = self._entities[alert.sensor_id].state.flap
            since = time.strftime("%H:%M:%SZ", time.gmtime(flap.since))
            return f"sensor flapping since {since} ({flap.percent:.1f} % weighted state change)"
        return ""

    def _on_tick(self) -> Steps[None]:
        now = self._clock()
        for sensor_id in list(self._flapping):  # silence counts: a quiet sensor settles
            yield from self._sample(sensor_id, self._entities[sensor_id], None, now)
        counted = yield from self._pipelined(lambda pipe: self._queue_fleet(pipe, [], now))
        yield from self._on_fleet_count(int(counted[-1]), now)
        cutoff = now - self._conf.passivate_after_seconds
        idle = []
        for sensor_id, entity in self._entities.items():  # least recently seen first
            if entity.seen_at >= cutoff:
                break
            if sensor_id not in self._flapping:  # kept until it settles, to report the stop
                idle.append(sensor_id)
        yield from self._remove(idle)
        self._saving = len(self._dirty)
        yield from self._save_some()

    def _save_some(self) -> Steps[None]:
        """Snapshot the tick's dirty entities a chunk at a time.

        Between chunks the alerts queued meanwhile go first: one pipeline of every entity a
        busy second dirties holds a shard, and the critical alert waiting behind it, for about
        100 ms; a chunk of 500 still takes 20-50 ms of wall time under load, sharing the
        interpreter lock with every other stage (README "Performance").
        """
        chunk = list(itertools.islice(self._dirty, min(self._saving, _SNAPSHOT_CHUNK)))
        yield from self._snapshot(chunk)
        self._saving -= len(chunk)
        if self._saving > 0 and self._dirty:
            self.actor_ref.tell(_SaveMore())
        else:
            self._saving = 0

    def _passivate(self, count: int) -> Steps[None]:
        """Drop the `count` least recently seen entities, snapshotting them first."""
        yield from self._remove(list(itertools.islice(self._entities, count)))

    def _fresh(self, sensor_id: str, snapshots: Mapping[str, Snapshot]) -> Snapshot | None:
        """The snapshot read with the alert's record, if nothing this shard wrote is newer."""
        snap = snapshots.get(sensor_id)
        if snap is None:
            return None
        if snap.read_after < self._born or time.monotonic() - snap.read_after > _SNAPSHOT_TRUST:
            return None
        return None if self._removed.get(sensor_id, -1.0) >= snap.read_after else snap

    def _remove(self, sensor_ids: list[str]) -> Steps[None]:
        """Take entities out of memory, snapshotting those not saved yet."""
        yield from self._snapshot([s for s in sensor_ids if s in self._dirty])
        left = time.monotonic()  # after the write: a read sent before it is not trusted
        for sensor_id in sensor_ids:
            del self._entities[sensor_id]
            self._flapping.discard(sensor_id)
            self._removed.pop(sensor_id, None)
            self._removed[sensor_id] = left
        while self._removed:  # each entry is dropped once: O(1) per removal over time
            oldest, at = next(iter(self._removed.items()))
            if left - at <= _SNAPSHOT_TRUST:
                break
            del self._removed[oldest]

    def _snapshot(self, sensor_ids: list[str]) -> Steps[None]:
        if not sensor_ids:
            return
        pipe = batch(self._redis)
        saved = self._queue_snapshots(pipe, sensor_ids)
        yield lambda: execute(pipe)  # the pipe keeps its commands: a retry sends them again
        self._saved(saved)

    def _queue_snapshots(self, pipe: Batch, sensor_ids: list[str]) -> dict[str, SensorState]:
        """Queue the entities' snapshots; returns the states written, for _saved."""
        saved = {}
        for sensor_id in sensor_ids:
            entity = self._entities[sensor_id]
            saved[sensor_id] = entity.state
            pipe.set(
                self._keys.snapshot(entity.customer_id, sensor_id),
                orjson.dumps(entity.state.to_snapshot()),
                ex=self._ttl,
            )
        return saved

    def _saved(self, saved: dict[str, SensorState]) -> None:
        """Entities whose state is still the one written are clean (states are immutable)."""
        for sensor_id, state in saved.items():
            entity = self._entities.get(sensor_id)
            if entity is None or entity.state is state:
                self._dirty.discard(sensor_id)


class _SaveMore:
    """Write the next chunk of the tick's snapshots."""


class _Resume:
    """Try again the Redis step that met an outage (told by a timer)."""


def _critical(alert: Alert) -> bool:
    return alert.priority == Priority.CRITICAL


def _sensor_of(alert: Alert) -> str:
    return alert.sensor_id
