"""The supervisor: starts actors in dependency order, replaces the dead, stops in reverse."""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

import pykka
import redis
import redis.cluster

from tripline.actors import FAILURES
from tripline.actors._retry import Backoff, retry, retry_async
from tripline.actors.dialer import Dialer
from tripline.actors.enricher import Enricher
from tripline.actors.mqtt_subscriber import MqttSubscriber
from tripline.actors.sensor import SensorShard, shard_of
from tripline.adapters.backends import BackendsFactory
from tripline.adapters.backends.registry import build_backends
from tripline.adapters.deadletter import DeadLetters
from tripline.adapters.redis_clients import primary_address, sync_redis
from tripline.adapters.store import Keys, OutboxHints
from tripline.conf.redis_topology import Kind
from tripline.conf.rules import load_rules
from tripline.conf.schema import Config
from tripline.messages import (
    AdoptQueue,
    Alert,
    AlertBatch,
    ConnectionQuery,
    ControlsChanged,
    Drain,
    EndSession,
    EntityCountQuery,
    Ping,
    Priority,
    PublishEvent,
    Snapshot,
    SnapshotTick,
    StatusQuery,
)
from tripline.pipeline.calling_window import warm_holidays
from tripline.pipeline.caps import Cap, CapRules, parse_cap
from tripline.pipeline.comply import ComplyRules
from tripline.pipeline.fleet import FleetRules
from tripline.pipeline.prioritise import PriorityRules
from tripline.pipeline.validate import Limits
from tripline.service.accept import Acceptor
from tripline.service.controls import OperatorControls, set_paused
from tripline.service.events import Events
from tripline.service.lease import Lease
from tripline.service.ledger import ledger_reader, ledger_status, ledger_writer
from tripline.service.resume import SweepRules, sweep
from tripline.service.stats import Stats
from tripline.service.takeover import adopt

log = logging.getLogger("tripline.supervisor")

_ASK_TIMEOUT = 10.0
_RELAUNCH_EVERY = 2.0  # seconds between attempts to start an actor whose start failed
# An alert still 'accepted' this long after it was routed is routed again even if no actor
# died: a batch an actor set aside (e.g. the enricher during a Redis outage) comes back.
_IN_FLIGHT_LIMIT = 180.0
_CONTROLS_EVERY = 1.0  # seconds: how soon a window or pause set elsewhere (instance, CLI) applies
_SWEEP_SHARE = 0.2  # of the wall time, for the periodic sweep: spread out, not one burst
_CRITICAL_MQTT = "mqtt-critical"
_SUBSCRIBERS = ("mqtt", _CRITICAL_MQTT)
"""The subscriber actors: stopped first, so nothing new arrives while the rest drains."""
# How long a message for an actor that died waits for its replacement: ~5 s, 50 ms apart.
_RESTART_PATIENCE = Backoff(first=0.05, cap=0.05, attempts=101)
_SESSION_QUIET = 1.0  # seconds without a message: a taken-over broker session holds no more


class ComponentStatus(StrEnum):
    """What /status says of each actor."""

    RUNNING = "running"
    RESTARTING = "restarting"
    STOPPED_BY_RESTART_BUDGET = "stopped_by_restart_budget"
    STOPPED = "stopped"


@dataclass
class _Slot:
    """One supervised actor: how to start it, its current ref, and its restart history."""

    name: str
    start: Callable[[], pykka.ActorRef[Any]]
    ref: pykka.ActorRef[Any] | None = None
    status: ComponentStatus = ComponentStatus.STOPPED
    restarts: deque[float] = field(default_factory=deque)
    total_restarts: int = 0
    last_error: str | None = None
    retry_at: float = 0.0


class Service:
    """One tripline instance: actors, their wiring, and supervision."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Callable[[], float] = time.time,
        backends: BackendsFactory | None = None,
        on_fenced: Callable[[], None] | None = None,
    ) -> None:
        """Build collaborators; nothing starts until start().

        `on_fenced`: called once if another instance adopted this one's work (its lease lapsed,
        see tripline/service/lease.py): `tripline run` stops the process. By default the
        subscribers stop (nothing new is taken in) and the service reports itself unhealthy.
        """
        self.config, self.clock = config, clock
        self._on_fenced = on_fenced
        self.fenced = False
        self.stats = Stats()
        self.events = Events(config.mqtt.client_id, clock)
        self.events.publish_with(self._publish_event)
        # On a Redis Cluster a record script appends to the outbox of its own slot (a script
        # touches one slot), and the writer reads every slot's (docs/architecture.md, "The
        # compliance ledger"); elsewhere to the one stream.
        per_slot = config.ledger.enabled and config.redis.topology().kind == Kind.CLUSTER
        self.keys = Keys(
            config.redis.key_prefix,
            ledger=config.ledger.enabled,
            slot_outboxes=per_slot,
            hints=OutboxHints() if per_slot else None,
        )
        self.redis = sync_redis(
            config.redis, socket_timeout=5, socket_connect_timeout=2, health_check_interval=10
        )
        self.ledger = ledger_writer(config, self.redis, self.keys, self.stats.registry, clock)
        self.ledger_reader = ledger_reader(config)
        p = config.priorities
        self.dead_letters = DeadLetters(
            client=self.redis,
            keys=self.keys,
            max_entries=config.status.dead_letter_max_entries,
            registry=self.stats.registry,
            clock=clock,
        )
        self.acceptor = Acceptor(
            client=self.redis,
            keys=self.keys,
            limits=Limits(
                max_body_bytes=config.http.max_body_bytes,
                max_string_length=config.validate.max_string_length,
                max_future_skew_seconds=config.validate.max_future_skew_seconds,
                max_age_seconds=config.validate.max_age_seconds,
                max_depth=config.validate.max_depth,
            ),
            rules=PriorityRules.from_config(p.default, p.alert_types, p.severities),
            record_ttl=config.redis.record_ttl_seconds,
            stats=self.stats,
            clock=clock,
            pending_key=self.keys.pending(config.mqtt.client_id),
            dead_letters=self.dead_letters,
            attempts=config.status.quarantine_after_attempts,
        )
        self._backends_factory: BackendsFactory = backends or (
            lambda take: build_backends(config, take)
        )
        self.comply_rules = ComplyRules(
            calling=load_rules(config.comply.rules_file or None),
            safety_override=frozenset(config.comply.safety_override_alert_types),
            due_hour=config.tasks.due_hour,
            scheduled_callbacks=frozenset(
                Priority.from_label(p)
                for p, action in config.comply.blocked_action.items()
                if action == "scheduled_callback"
            ),
            recheck_before=config.comply.scheduled_recheck_seconds,
        )
        self.caps = CapRules(
            number=_caps(config.comply.number_caps), customer=_caps(config.comply.customer_caps)
        )
        self.maintenance = OperatorControls()
        m = config.mqtt
        self.lease = Lease(
            self.redis,
            self.keys,
            instance=m.client_id,
            ttl=config.status.takeover_after_seconds,
            sessions=[(m.client_id, m.topic)]
            + ([(f"{m.client_id}-critical", m.critical_topic)] if m.critical_topic else []),
        )
        self._adopting: threading.Thread | None = None
        self._slots: dict[str, _Slot] = {}
        self._lock = threading.RLock()
        # Which 'accepted' alerts the actors still hold, for the sweep. An actor's death loses
        # its inbox: the generation moves on, and what was accepted before `_since` (the last
        # death, or this start) is re-routed. What the sweep re-routes itself is remembered by
        # key (key -> generation, when), as it was accepted before. Routing keeps no per-alert
        # record: decided alerts leave the pending index without the sweep, so a dict entry per
        # routed alert would only grow, at a cost on the hot path (README "Performance").
        self._generation = 0
        self._since = 0.0
        self._rerouted: dict[str, tuple[int, float]] = {}
        self._routed_lock = threading.Lock()
        self._stopping = threading.Event()
        self._watchdog: threading.Thread | None = None
        self.started_at = 0.0

    # --- resolvers: actors reach each other through these, never through cached refs ---------

    def _publish_event(self, payload: bytes) -> None:
        self.ref("mqtt").tell(PublishEvent(payload=payload))

    def ref(self, name: str) -> pykka.ActorRef[Any]:
        """The current ref of a supervised actor."""
        ref = self._slots[name].ref
        if ref is None:
            raise pykka.ActorDeadError(f"{name} is not running")
        return ref

    def route(self, alerts: list[Alert], snapshots: Mapping[str, Snapshot] | None = None) -> None:
        """Fan accepted alerts out to their shards, one batch per shard, order kept.

        `snapshots`: by sensor, the snapshots read when the alerts were recorded.
        """
        for name, batch in self._shard_batches(alerts, snapshots or {}):
            self._tell_with_patience(name, batch)

    async def route_async(
        self, alerts: list[Alert], snapshots: Mapping[str, Snapshot] | None = None
    ) -> None:
        """route() for an event loop (the webhook's): a shard's restart is waited out there."""
        for name, batch in self._shard_batches(alerts, snapshots or {}):
            await retry_async(
                functools.partial(self._tell_async, name, batch),
                _RESTART_PATIENCE,
                on=(pykka.ActorDeadError,),
            )

    def _shard_batches(
        self, alerts: list[Alert], snapshots: Mapping[str, Snapshot]
    ) -> list[tuple[str, AlertBatch]]:
        by_shard: dict[int, list[Alert]] = defaultdict(list)
        for alert in alerts:
            by_shard[shard_of(alert.sensor_id, self.config.sensor.shards)].append(alert)
        return [
            (
                f"shard-{shard}",
                AlertBatch(
                    alerts=tuple(batch),
                    snapshots={a.sensor_id: s for a in batch if (s := snapshots.get(a.sensor_id))},
                ),
            )
            for shard, batch in by_shard.items()
        ]

    async def _tell_async(self, name: str, message: object) -> None:
        """Tell, as a step retry_async can take (a tell never waits)."""
        self.ref(name).tell(message)

    def _tell_with_patience(self, name: str, message: object) -> None:
        """Tell `name`, waiting out a restart (the watchdog replaces the dead within ~0.2 s)."""
        retry(lambda: self.ref(name).tell(message), _RESTART_PATIENCE, on=(pykka.ActorDeadError,))

    # --- start and stop ----------------------------------------------------------------------

    def start(self) -> None:
        """Start in dependency order: Redis, dialer, enricher, shards, subscriber last."""
        self.started_at = self._since = self.clock()
        self.redis.ping()  # fail fast with a clear error if Redis is not there
        self._take_lease()
        if self.ledger is not None:  # entries wait in Redis until it writes them
            self.ledger.start()
        self.maintenance.refresh(self.redis, self.keys)
        # The holiday tables the rules close on, loaded beside the start-up instead of on the
        # way of the first alerts that need them (~80 ms for the first: a critical one's too).
        year = time.gmtime(self.clock()).tm_year
        threading.Thread(
            target=warm_holidays,
            args=(self.comply_rules.calling, (year, year + 1)),
            name="holidays-warm-up",
            daemon=True,
        ).start()
        c = self.config
        self._add(
            "dialer",
            lambda: Dialer.start(
                conf=c.dialer,
                backends=self._backends_factory,
                client=self.redis,
                instance=c.mqtt.client_id,
                redis_conf=c.redis,
                keys=self.keys,
                routing=c.priorities.routing,
                rules=self.comply_rules,
                stats=self.stats,
                caps=self.caps,
                maintenance=self.maintenance,
                record_ttl=c.redis.record_ttl_seconds,
                reach=c.reach,
                outcomes=c.outcomes,
                crm=c.crm,
                clock=self.clock,
            ),
        )
        self._add(
            "enricher",
            lambda: Enricher.start(
                conf=c.crm,
                redis_conf=c.redis,
                keys=self.keys,
                rules=self.comply_rules,
                dialer=lambda: self.ref("dialer"),
                stats=self.stats,
                clock=self.clock,
            ),
        )
        for i in range(c.sensor.shards):
            self._add(
                f"shard-{i}",
                lambda i=i: SensorShard.start(  # type: ignore[misc]
                    shard=i,
                    conf=c.sensor,
                    client=self.redis,
                    keys=self.keys,
                    pending_key=self.keys.pending(c.mqtt.client_id),
                    record_ttl=c.redis.record_ttl_seconds,
                    enricher=lambda: self.ref("enricher"),
                    dialer=lambda: self.ref("dialer"),
                    stats=self.stats,
                    events=self.events,
                    fleet=FleetRules(
                        sensors=c.fleet.incident_sensors,
                        window_seconds=c.fleet.window_seconds,
                        clear_ratio=c.fleet.clear_ratio,
                    ),
                    maintenance=self.maintenance,
                    dead_letters=self.dead_letters,
                    clock=self.clock,
                ),
            )
        # Before the broker delivers anything new: whatever a previous life left unfinished.
        resumed = self.resume(SweepRules(accepted_grace=0.0, dialing_grace=0.0))
        if resumed:
            log.warning("resumed unfinished alerts from a previous run: %s", dict(resumed))
        if c.mqtt.critical_topic:
            # A session of its own: what waits in the main session (a storm's backlog, in the
            # broker's FIFO order) does not hold a critical alert back (README "Performance").
            # Connected first: after a restart, what waits in it is accepted before the
            # main session's backlog starts to arrive.
            critical = replace(
                c.mqtt,
                topic=c.mqtt.critical_topic,
                client_id=f"{c.mqtt.client_id}-critical",
                critical_topic="",
            )
            self._add(
                _CRITICAL_MQTT,
                lambda: MqttSubscriber.start(
                    conf=critical,
                    acceptor=self.acceptor,
                    route=self.route,
                    group_of=c.mqtt.client_id,
                ),
            )
        self._add(
            "mqtt",
            lambda: MqttSubscriber.start(conf=c.mqtt, acceptor=self.acceptor, route=self.route),
        )
        self._watchdog = threading.Thread(
            target=self._watch, name="supervisor-watchdog", daemon=True
        )
        self._watchdog.start()

    # --- the lease, and adopting the work of instances whose lease lapsed ---------------------

    def _take_lease(self) -> None:
        """Take this instance's lease; first wait for a survivor adopting our work to finish.

        Were we to start meanwhile, we would drain our own broker session against it and
        sweep the index it is moving.
        """
        while claimer := self.lease.acquire():
            log.warning(
                "%s is adopting this instance's work (its lease had lapsed); waiting for it",
                claimer,
            )
            if self._stopping.wait(1.0):
                return

    def _keep_lease(self) -> None:
        """Renew the lease; adopt one lapsed instance if no adoption is under way."""
        if not self.lease.renew():
            self._fenced()
            return
        if self._adopting is not None and self._adopting.is_alive():
            return
        dead = self.lease.claim()
        if dead is None:
            return
        self._adopting = threading.Thread(
            target=self._adopt, args=(dead,), name=f"takeover-{dead}"[:15], daemon=True
        )
        self._adopting.start()

    def _fenced(self) -> None:
        if self.fenced:
            return
        self.fenced = True
        log.critical(
            "this instance's lease was taken: another instance presumed it dead and adopted "
            "its work; stopping (a new start takes a new lease)"
        )
        if self._on_fenced is not None:
            self._on_fenced()
            return
        with self._lock:
            for name in _SUBSCRIBERS:
                self._stop_slot(name)

    def _adopt(self, dead: str) -> None:
        """Adopt `dead`'s work (tripline/service/takeover.py), then release the claim."""
        log.warning("instance %s's lease lapsed; adopting its work", dead)
        try:
            counts = adopt(
                dead,
                client=self.redis,
                keys=self.keys,
                me=self.config.mqtt.client_id,
                sessions=self.lease.sessions_of(dead, self.config.mqtt.topic),
                drain_session=lambda client_id, topic: self._drain_session(dead, client_id, topic),
                adopt_queue=lambda key: int(
                    self.ref("dialer").ask(AdoptQueue(queue_key=key), block=True, timeout=60.0)
                ),
                sweep_dead=lambda instance: sweep(
                    self.redis,
                    self.keys,
                    instance=instance,
                    now=self.clock(),
                    rules=SweepRules(accepted_grace=0.0, dialing_grace=0.0),
                    route=self._reroute,
                    defer=lambda task: self._tell_with_patience("dialer", task),
                    settled=self._settled,
                    quarantine=lambda key, error, blob: self.dead_letters.add(
                        "resume", error=error, payload=blob, key=key
                    ),
                ),
            )
        except Exception:  # the claim stays ours: the next renewal tries again
            log.exception("adopting %s failed; trying again", dead)
            return
        if counts is None:
            return
        self.lease.release(dead)
        self.stats.takeovers.inc()
        self.events.emit("takeover", adoptedFrom=dead, adopted=dict(counts))
        log.warning("adopted the work of %s: %s", dead, dict(counts))

    def _drain_session(self, dead: str, client_id: str, topic: str) -> bool:
        """Connect as one of `dead`'s broker sessions, take in what it holds, end it."""
        conf = replace(self.config.mqtt, client_id=client_id, topic=topic, critical_topic="")
        ref = MqttSubscriber.start(
            conf=conf, acceptor=self.acceptor, route=self.route, group_of=dead, takeover=True
        )
        try:
            deadline = time.monotonic() + max(60.0, 2 * self.config.status.takeover_after_seconds)
            while time.monotonic() < deadline and not self._stopping.is_set():
                if ref.ask(EndSession(quiet=_SESSION_QUIET), timeout=_ASK_TIMEOUT):
                    return True
                time.sleep(0.2)
            return False
        finally:
            ref.stop(timeout=_ASK_TIMEOUT)

    def resume(self, rules: SweepRules, *, share: float = 1.0) -> Counter[str]:
        """Drive this instance's unfinished alerts on (see tripline/service/resume.py).

        `share`: the part of the wall time the sweep may take; it pauses after each page for
        as long as the rest of that share asks. A page takes longer when the process is
        busier, and so does the pause: the sweep's work never arrives in one burst, nor in
        pages a fixed pause apart, either of which stretches the slowest critical alerts'
        latency (README "Performance"). The actors take decided alerts out of the index, so
        the sweep reads only what still moves.

        'In flight' compares an alert's acceptance with this process's clock: an alert a
        previous life accepted on a host whose clock ran ahead is left to the actors for at
        most _IN_FLIGHT_LIMIT before it is routed again.
        """
        now = self.clock()
        with self._routed_lock:  # what the sweep re-routed that long ago is no one's any more
            for key in [k for k, (_, at) in self._rerouted.items() if at < now - _IN_FLIGHT_LIMIT]:
                del self._rerouted[key]
        return sweep(
            self.redis,
            self.keys,
            instance=self.config.mqtt.client_id,
            now=now,
            rules=rules,
            route=self._reroute,
            defer=lambda task: self._tell_with_patience("dialer", task),
            in_flight=lambda key, age: self._in_flight(key, now - age, age),
            settled=self._settled,
            between_pages=lambda took: time.sleep(took * (1 / share - 1)),
            quarantine=lambda key, error, blob: self.dead_letters.add(
                "resume", error=error, payload=blob, key=key
            ),
        )

    def _periodic_sweep(self) -> None:
        status = self.config.status
        try:
            self.resume(
                SweepRules(
                    accepted_grace=status.sweep_accepted_grace_seconds,
                    reroute_limit=status.quarantine_after_attempts,
                ),
                share=_SWEEP_SHARE,
            )
        except (redis.RedisError, pykka.ActorDeadError) as exc:
            log.warning("resume sweep skipped: %r", exc)
        except Exception:  # the watchdog must outlive any one bad sweep
            log.exception("resume sweep failed")

    def _reroute(self, alerts: list[Alert]) -> None:
        now = self.clock()
        with self._routed_lock:
            for alert in alerts:
                self._rerouted[alert.idempotency_key] = (self._generation, now)
        self.route(alerts)

    def _in_flight(self, key: str, accepted_at: float, age: float) -> bool:
        """Routed in this life, no actor died since, and not stuck for too long.

        Not an alert whose record an attempt that failed may have written: the acceptor
        routed nothing of that attempt, and a retry that found the record routes it only
        in this process (the retry may reach another instance).
        """
        if age >= _IN_FLIGHT_LIMIT:
            return False
        with self._routed_lock:
            if (rerouted := self._rerouted.get(key)) is not None:
                return rerouted[0] == self._generation
            since = self._since
        if self.acceptor.uncertain(key):  # recorded by an attempt that failed: never routed
            return False
        return accepted_at >= since

    def _settled(self, keys: list[str]) -> None:
        with self._routed_lock:
            for key in keys:
                self._rerouted.pop(key, None)

    def _add(self, name: str, start: Callable[[], pykka.ActorRef[Any]]) -> None:
        slot = _Slot(name, start)
        self._slots[name] = slot
        self._launch(slot)

    def _launch(self, slot: _Slot) -> None:
        ref = slot.start()
        ref.ask(Ping(), timeout=_ASK_TIMEOUT)  # surfaces on_start failures now
        slot.ref, slot.status = ref, ComponentStatus.RUNNING

    def stop(self, drain_timeout: float = 10.0) -> None:
        """Stop the subscriber first, drain in-flight work, then stop the rest in reverse."""
        self._stopping.set()
        with self._lock:
            for name in _SUBSCRIBERS:
                if name in self._slots:
                    self._stop_slot(name)
            self._drain(drain_timeout)
            for name in reversed(list(self._slots)):
                self._stop_slot(name)
        survivors = pykka.ActorRegistry.get_all()
        if survivors:
            log.error("actors survived the stop: %s", survivors)
        if self.ledger is not None:
            self.ledger.stop()
        if self.ledger_reader is not None:
            self.ledger_reader.close()
        self.redis.close()

    def _drain(self, timeout: float) -> None:
        """Wait until shards, enricher and dialer have nothing left, or until `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                for name, slot in self._slots.items():
                    if name not in _SUBSCRIBERS and slot.ref is not None:
                        slot.ref.ask(Ping(), timeout=_ASK_TIMEOUT)  # inbox before it is empty
                pending = self.ref("dialer").ask(Drain(), timeout=_ASK_TIMEOUT)
            except (pykka.ActorDeadError, pykka.Timeout):
                return
            if pending == 0:
                return
            time.sleep(0.05)
        log.warning("drain timed out; unfinished records stay in Redis")

    def _stop_slot(self, name: str) -> None:
        slot = self._slots.get(name)
        if slot is None or slot.ref is None:
            return
        try:
            slot.ref.stop(timeout=_ASK_TIMEOUT)
        except (pykka.Timeout, pykka.ActorDeadError):
            log.warning("%s did not stop cleanly", name)
        slot.ref, slot.status = None, ComponentStatus.STOPPED

    # --- supervision ---------------------------------------------------------------------------

    def _watch(self) -> None:
        """Replace dead actors; keep the lease, the controls, snapshots and the sweep going."""
        status = self.config.status
        # (every, job, under the lock): the sweep and the lease's adoption claims run outside
        # it, as they may take a while (the lease's renewal itself is one round trip).
        jobs = [
            (status.takeover_after_seconds / 3, self._lease_tick, False),
            (_CONTROLS_EVERY, self._controls_tick, True),
            (self.config.sensor.snapshot_interval_seconds, self._snapshot_tick, True),
            (status.sweep_interval_seconds, self._periodic_sweep, False),
        ]
        due = [time.monotonic() + every for every, _, _ in jobs]
        while not self._stopping.wait(0.2):
            with self._lock:
                if self._stopping.is_set():
                    return
                self._supervise()
            for i, (every, job, locked) in enumerate(jobs):
                if time.monotonic() < due[i]:
                    continue
                due[i] = time.monotonic() + every
                with self._lock if locked else contextlib.nullcontext():
                    if self._stopping.is_set():
                        return
                    job()

    def _lease_tick(self) -> None:
        try:
            self._keep_lease()
        except redis.RedisError as exc:
            log.warning("lease not renewed: %r", exc)

    def _controls_tick(self) -> None:
        try:  # changed by another instance or the CLI
            self.refresh_controls()
        except redis.RedisError as exc:
            log.warning("maintenance windows and pause not refreshed: %r", exc)

    def _snapshot_tick(self) -> None:
        for name, slot in self._slots.items():
            if name.startswith("shard-") and slot.ref is not None:
                slot.ref.tell(SnapshotTick())

    def _supervise(self) -> None:
        for slot in self._slots.values():
            if slot.ref is not None and not slot.ref.is_alive():
                self._replace(slot)
            elif (
                slot.ref is None
                and slot.status == ComponentStatus.RESTARTING
                and time.monotonic() >= slot.retry_at
            ):
                self._relaunch(slot)

    def _replace(self, slot: _Slot) -> None:
        """Pykka cannot restart an actor: start a fresh one (it restores from snapshots)."""
        now = time.monotonic()
        window = self.config.status.restart_window_seconds
        while slot.restarts and now - slot.restarts[0] > window:
            slot.restarts.popleft()
        if slot.ref is not None:
            slot.last_error = FAILURES.last(slot.ref.actor_urn) or "stopped unexpectedly"
        log.error("%s died: %s", slot.name, slot.last_error)
        if len(slot.restarts) >= self.config.status.restart_budget:
            slot.ref, slot.status = None, ComponentStatus.STOPPED_BY_RESTART_BUDGET
            log.critical("%s exceeded its restart budget; service unhealthy", slot.name)
            return
        slot.restarts.append(now)
        slot.total_restarts += 1
        with self._routed_lock:
            self._generation += 1  # what its inbox held is lost: let the sweep re-route it
            self._since = self.clock()
        slot.status = ComponentStatus.RESTARTING
        self._relaunch(slot)

    def _relaunch(self, slot: _Slot) -> None:
        """Start a fresh instance; if its on_start fails (Redis down, say), try again later.

        Failed starts do not count against the restart budget: only deaths of running actors
        do, so an outage of a dependency cannot exhaust it.
        """
        try:
            self._launch(slot)
            log.warning("%s restarted (%d in window)", slot.name, len(slot.restarts))
        except Exception as exc:
            log.warning("restart of %s failed (%r); retrying", slot.name, exc)
            slot.ref, slot.retry_at = None, time.monotonic() + _RELAUNCH_EVERY

    # --- what operators see ----------------------------------------------------------------

    @property
    def healthy(self) -> bool:
        """False once any actor is beyond its restart budget."""
        return all(
            s.status != ComponentStatus.STOPPED_BY_RESTART_BUDGET for s in self._slots.values()
        )

    def broker_connected(self) -> bool:
        """Whether the subscribers (the critical one too, if configured) hold a connection."""
        try:
            return all(
                self.ref(name).ask(ConnectionQuery(), timeout=2.0)
                for name in _SUBSCRIBERS
                if name in self._slots
            )
        except (pykka.ActorDeadError, pykka.Timeout):
            return False

    def status(self) -> dict[str, Any]:
        """The /status document."""
        actors = {}
        for name, slot in self._slots.items():
            actors[name] = {
                "status": slot.status.value,
                "restarts": slot.total_restarts,
                "lastError": slot.last_error,
            }
        entities, now = 0, self.clock()
        dialer: dict[str, Any] = {}
        try:
            dialer = dict(self.ref("dialer").ask(StatusQuery(), block=True, timeout=2.0))
            dialer.update(self.ref("enricher").ask(StatusQuery(), block=True, timeout=2.0))
            for name in self._slots:
                if name.startswith("shard-"):
                    entities += int(self.ref(name).ask(EntityCountQuery(), block=True, timeout=2.0))
        except (pykka.ActorDeadError, pykka.Timeout):
            pass
        return {
            "instance": self.config.mqtt.client_id,
            "healthy": self.healthy,
            "uptimeSeconds": round(now - self.started_at, 1),
            "actors": actors,
            "sensorEntities": entities,
            "counters": self.stats.snapshot(),
            "reach": self.stats.reach(),
            **dialer,
            "events": self.events.recent(20),
            "maintenance": [w.to_doc(now) for w in self.maintenance.open_at(now)],
            "leases": self._leases(now),
            "redis": self._redis_status(),
            "deadLetters": {
                "stream": self.dead_letters.key,
                "quarantined": self.dead_letters.counts(),
            },
            "ledger": self.ledger_status(),
            "recentDecisions": self.stats.recent(30),
        }

    def ledger_status(self) -> dict[str, Any]:
        """The ledger's writer: store reachable, entries waiting in Redis, the oldest's age."""
        return ledger_status(self.ledger, self.config.ledger)

    def _leases(self, now: float) -> dict[str, Any]:
        """The lease registry: every instance, live or lapsed, and who is adopting whom."""
        try:
            views = self.lease.view()
        except redis.RedisError:
            return {"takeoverAfterSeconds": self.lease.ttl, "instances": None}
        g = self.stats.gauges["leases"]
        g.labels("live").set(sum(v.live for v in views))
        g.labels("lapsed").set(sum(not v.live for v in views))
        return {
            "takeoverAfterSeconds": self.lease.ttl,
            "instances": [v.to_doc(now) for v in views],
        }

    def _redis_status(self) -> dict[str, object]:
        """Which Redis: its topology, addresses, and who is primary now.

        The primary the sentinels name (asked), or the primaries of the cluster's slot map.
        """
        doc = self.config.redis.topology().describe()
        try:
            if isinstance(self.redis, redis.cluster.RedisCluster):
                primaries = self.redis.get_primaries()  # type: ignore[no-untyped-call]
                doc["primaries"] = sorted(node.name for node in primaries)
            elif (primary := primary_address(self.redis)) is not None:
                doc["primary"] = primary
        except redis.RedisError as exc:  # the sentinels do not answer: /status still does
            doc["primary"] = None
            doc["error"] = str(exc)
        return doc

    def pause_dialing(self, *, paused: bool, by: str = "operator") -> None:
        """Hold every call (critical too), on every instance, until resumed.

        Tasks and decisions go on. The pause is kept in Redis: it holds across restarts, and
        the other instances take it up at their next poll (about a second).
        """
        set_paused(self.redis, self.keys, by=by if paused else None, now=self.clock())
        self.refresh_controls()

    def refresh_controls(self) -> None:
        """Take up what operators set in Redis; tell the dialer when the pause changed.

        Every refresh once the actors run goes through here (the one at start precedes the
        dialer, which reads the pause as it starts): a refresh elsewhere that saw a pause set
        by another instance would take the change without the log line or the dialer's nudge.
        """
        if self.maintenance.refresh(self.redis, self.keys):
            paused = self.maintenance.dialing_paused
            if paused is None:
                log.warning("dialing resumed")
            else:
                log.warning("dialing paused by %s, on every instance", paused.by)
            with contextlib.suppress(pykka.ActorDeadError):  # a new dialer reads it at start
                self.ref("dialer").tell(ControlsChanged())

    def refresh_gauges(self) -> None:
        """Bring the gauges /metrics serves up to date with what the actors report."""
        status = self.status()
        g = self.stats.gauges
        try:
            redis_up = bool(self.redis.ping())
        except redis.RedisError:
            redis_up = False
        g["up"].labels("redis").set(redis_up)
        g["up"].labels("broker").set(self.broker_connected())
        for name, actor in status["actors"].items():
            g["actor_up"].labels(name).set(actor["status"] == ComponentStatus.RUNNING)
            g["actor_restarts"].labels(name).set(actor["restarts"])
        g["breaker_open"].labels("backend").set(status.get("backendBreaker") == "open")
        g["breaker_open"].labels("crm").set(status.get("crm", {}).get("breaker") == "open")
        occupancy = status.get("occupancy")
        if occupancy:
            g["queue_occupancy"].set(occupancy["occupancy"])
        budget = status.get("rateBudget", {})
        g["rate_budget_per_minute"].set(budget.get("perMinute", 0))
        g["rate_budget_taken"].set(budget.get("takenHere", 0))
        g["dialing_paused"].labels("operator").set(status.get("dialingPaused") is not None)
        g["dialing_paused"].labels("rate_limit").set(status.get("pausedUntil") is not None)
        g["fleet_incident"].set(status.get("fleetIncident") is not None)
        g["sensor_entities"].set(status["sensorEntities"])
        g["maintenance_windows_open"].set(len(status["maintenance"]))


def _caps(texts: list[str]) -> tuple[Cap, ...]:
    caps = tuple(cap for cap in map(parse_cap, texts) if cap is not None)
    assert len(caps) == len(texts)  # noqa: S101 - conf.schema validated them
    return caps
