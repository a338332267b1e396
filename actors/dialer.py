"""The one dialer: priority queues under a shared rate budget, occupancy and a backend breaker."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Any

import pykka

from tripline.actors import Supervised
from tripline.actors._inbox import urgent_first_inbox
from tripline.actors._loop import LoopThread
from tripline.actors.dialing.jobs import DialJobs, max_alert_age
from tripline.adapters.backends import BackendsFactory
from tripline.adapters.budget import PrepaidBudget, RateBudget
from tripline.adapters.redis_clients import SyncRedis
from tripline.adapters.redis_io import urgently
from tripline.adapters.store import Keys, iso
from tripline.conf.schema import (
    CrmConfig,
    DialerConfig,
    OutcomesConfig,
    ReachConfig,
    RedisConfig,
)
from tripline.messages import (
    AdoptQueue,
    ControlsChanged,
    DialFinished,
    DialIntent,
    Drain,
    FleetIncident,
    OccupancyObserved,
    Ping,
    Priority,
    PumpTick,
    Reason,
    SensorResolved,
    StatusQuery,
    TaskIntent,
    Withdrawn,
    WorkBatch,
)
from tripline.pipeline.breaker import Breaker, BreakerState, allow, record
from tripline.pipeline.caps import CapRules
from tripline.pipeline.comply import ComplyRules
from tripline.pipeline.dial_queue import Conditions, DialQueue, Queued, RecentResolves, Work
from tripline.pipeline.govern import GovernRules, Occupancy
from tripline.service.controls import OperatorControls
from tripline.service.stats import Stats

log = logging.getLogger("tripline.dialer")

__all__ = ["Dialer"]

_IDLE_TICK = 1.0  # re-evaluate held and ageing work at least this often
_PREPAY = 32  # most budget taken in one round trip
_PREPAID_TTL = 0.1  # budget taken ahead and not used within this long is let go
_MARK_BATCH = 200  # newly queued work recorded per round trip, at most
_RESOLVES_KEPT = 600.0  # a resolve can overtake its firing alert (which visits the CRM first)
_RESOLVES_MAX = 100_000


class Dialer(Supervised, pykka.ThreadingActor):
    """Owns the queues, the pause and the breaker; HTTP runs on its own asyncio loop.

    The loop (actors/dialing/) never touches actor state: it records outcomes in Redis
    and tells DialFinished and OccupancyObserved back.
    """

    # The critical lane: a critical alert's batch goes ahead of those waiting (actors/_inbox.py).
    _create_actor_inbox = staticmethod(urgent_first_inbox)

    def __init__(
        self,
        *,
        conf: DialerConfig,
        backends: BackendsFactory,
        client: SyncRedis,
        redis_conf: RedisConfig,
        keys: Keys,
        instance: str,
        routing: dict[str, int],
        rules: ComplyRules,
        stats: Stats,
        caps: CapRules | None = None,
        maintenance: OperatorControls | None = None,
        record_ttl: int = 86400,
        reach: ReachConfig | None = None,
        outcomes: OutcomesConfig | None = None,
        crm: CrmConfig | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Keep collaborators; the backends are built on the loop that will use them."""
        super().__init__()
        self._conf, self._backends_factory, self._clock, self._stats = conf, backends, clock, stats
        # Maintenance windows and the operators' pause, shared by every instance.
        self._controls = maintenance or OperatorControls()
        self._budget = RateBudget(
            key=keys.rate(),
            rate_per_minute=conf.rate_per_minute,
            burst=conf.burst,
            client=client,
            critical_reserve=conf.critical_reserve,
        )
        self._prepaid = PrepaidBudget(self._budget, ttl=_PREPAID_TTL, most=_PREPAY)
        self._jobs = DialJobs(
            conf=conf,
            redis_conf=redis_conf,
            keys=keys,
            queue_key=keys.dial_queue(instance),
            pending_key=keys.pending(instance),
            routing=routing,
            rules=rules,
            caps=caps or CapRules(),
            controls=self._controls,
            record_ttl=record_ttl,
            stats=stats,
            clock=clock,
            tell=self._tell_self,
            instance=instance,
            reach=reach or ReachConfig(),
            outcomes=outcomes or OutcomesConfig(),
            crm=crm,
        )
        self._governance = GovernRules(
            threshold=conf.occupancy_threshold,
            saturation=conf.saturation_threshold,
            max_observation_age=max(30.0, conf.occupancy_poll_seconds * 3),
            aging_seconds=conf.aging_seconds,
            max_age={Priority.from_label(k): float(v) for k, v in conf.max_age_seconds.items()},
            max_alert_age=max_alert_age(conf),
        )
        self._queue = DialQueue()
        self._pending = {Priority.from_label(k): float(v) for k, v in conf.pending_seconds.items()}
        self._resolves = RecentResolves(kept_seconds=_RESOLVES_KEPT, most=_RESOLVES_MAX)
        self._cancelling: set[str] = set()
        self._incident: FleetIncident | None = None
        self._calls_in_flight: set[str] = set()  # dialing: not decided yet (tasks are)
        self._in_flight = {True: 0, False: 0}  # critical?, in flight
        self._caps = {True: conf.critical_concurrency, False: conf.max_concurrency}
        self._paused_until = 0.0
        self._occupancy: Occupancy | None = None
        self._breaker = Breaker()
        self._tick_at: float | None = None
        self._to_mark: list[Work] = []
        self._pump_owed = False
        self._loop: LoopThread | None = None
        self._outbox: list[Coroutine[Any, Any, None]] = []  # jobs for the loop, in order

    def _tell_self(self, message: object) -> None:
        self.actor_ref.tell(message)

    # --- lifecycle -------------------------------------------------------------------------

    def on_start(self) -> None:
        """Start the loop and the backends; take back work queued before a restart."""
        self._loop = LoopThread(f"dialer-loop-{id(self):x}")
        restored = self._loop.call(self._open())
        self._requeue(restored)
        if restored:
            log.warning("dialer: %d queued items restored from Redis", len(restored))
        self._pump()
        self._dispatch()

    def _requeue(self, works: list[Work]) -> None:
        """Queue persisted work again (restored, or adopted), calls at their first queueing."""
        now = self._clock()
        for work in works:
            self._queue.add(work, at=work.enqueued_at if isinstance(work, DialIntent) else now)

    async def _open(self) -> list[Work]:
        await self._jobs.connect()
        # For requests the pump did not budget: token fetches, occupancy polls, batches.
        budget = RateBudget(
            key=self._budget.key,
            rate_per_minute=self._conf.rate_per_minute,
            burst=self._conf.burst,
            aclient=self._jobs.redis,
        )
        return await self._jobs.open(
            self._backends_factory, budget.take, poll=self._conf.occupancy_source != "none"
        )

    def on_stop(self) -> None:
        """Close connections and stop the loop; queued work stays persisted in Redis."""
        if self._loop is not None:
            self._loop.stop(closing=self._jobs.close)
            self._loop = None

    # --- messages --------------------------------------------------------------------------

    def on_receive(self, message: Any) -> Any:  # noqa: ANN401
        """Dispatch one message, then start what may start."""
        try:
            return self._receive(message)
        finally:
            self._dispatch()

    def _receive(self, message: Any) -> Any:  # noqa: ANN401
        if (self._to_mark or self._pump_owed) and not isinstance(
            message, DialIntent | TaskIntent | WorkBatch | DialFinished
        ):
            self._pump()  # work held back for a batched record goes first
        later = False  # more is coming: pump once for all of it
        match message:
            case Drain():
                waiting = sum(self._queue.live.values())
                return waiting + sum(self._in_flight.values()) + len(self._cancelling)
            case StatusQuery() | Ping() | AdoptQueue():
                return self._answer(message)
            case DialIntent() | TaskIntent() | WorkBatch():
                works = message.works if isinstance(message, WorkBatch) else (message,)
                later = self._take_work(works)  # records them together, then pumps
            case DialFinished():
                self._on_finished(message)
                later = self._owe_pump()
            case _:
                if not self._on_fact(message):
                    return super().on_receive(message)
        if not later:
            self._pump()
        return None

    def _answer(self, message: StatusQuery | Ping | AdoptQueue) -> Any:  # noqa: ANN401
        if isinstance(message, StatusQuery):
            return self._status()
        if isinstance(message, AdoptQueue):
            assert self._loop is not None  # noqa: S101 - on_start ran
            adopted = self._loop.call(self._jobs.records.adopt(message.queue_key))
            self._requeue(adopted)
            if adopted:
                log.warning(
                    "dialer: adopted %d queued items of %s", len(adopted), message.queue_key
                )
                self._pump()
            return len(adopted)
        return True

    def _on_fact(self, message: object) -> bool:
        """Take in what other actors and the loop observed; False for an unknown message."""
        match message:
            case SensorResolved():
                self._on_resolved(message)
            case Withdrawn():
                for key in message.keys:
                    self._queue.withdraw(key)
            case FleetIncident():
                opened = message.active and self._incident is None
                self._incident = message if message.active else None
                if opened:
                    self._defer_waiting_calls()
            case ControlsChanged():
                pass  # the pump after every message starts what a resume let go
            case OccupancyObserved():
                self._occupancy = message.occupancy
            case PumpTick():
                self._tick_at = None
            case _:
                return False
        return True

    def _owe_pump(self) -> bool:
        """True when more messages wait (often more finished work): pump once for them all.

        Pumping per finished call started one call per round, each its own loop task and
        round trips: a slot freed, a call started, and batches of one all the way down.
        """
        if self.actor_inbox.empty():
            return False
        self._pump_owed = True
        return True

    def _take_work(self, works: tuple[Work, ...]) -> bool:
        """Queue new work; True when its records wait for more work to batch with."""
        urgent = False
        for work in works:
            self._queue_work(work)
            urgent = urgent or work.priority == Priority.CRITICAL
        # A critical alert waits for no batch: recorded and started now.
        if not urgent and len(self._to_mark) < _MARK_BATCH and not self.actor_inbox.empty():
            return True
        self._flush_marks()
        return False

    def _queue_work(self, work: Work) -> None:
        if isinstance(work, DialIntent):
            resolved_by = self._resolves.cleared(work, self._clock())
            if resolved_by is not None:
                self._cancel(work, resolved_by)
                return
            if self._incident is not None and work.priority != Priority.CRITICAL:
                self._defer(work, Reason.FLEET_INCIDENT, self._incident_detail())
                return
            if not work.not_before and work.attempt <= 1:
                delay = self._pending.get(work.priority, 0.0)
                work = replace(work, not_before=work.alert.accepted_at + delay)
        self._queue.add(work, at=self._clock())
        self._to_mark.append(work)

    def _flush_marks(self) -> None:
        """Record newly queued work in one round trip; before any of it can be dispatched.

        Critical work in a batch of its own, first, in Redis' urgent lane (redis_io.urgently):
        not behind a storm's hundreds of tasks recorded in the same round trip.
        """
        if self._to_mark:
            critical = [w for w in self._to_mark if w.priority == Priority.CRITICAL]
            rest = [w for w in self._to_mark if w.priority != Priority.CRITICAL]
            if critical:
                self._submit(urgently(self._jobs.mark_queued(critical)))
            if rest:
                self._submit(self._jobs.mark_queued(rest))
            self._to_mark = []

    def _on_finished(self, message: DialFinished) -> None:
        self._calls_in_flight.discard(message.intent_id)
        if message.intent_id in self._cancelling:
            self._cancelling.discard(message.intent_id)
            if message.requeue is not None:  # alerts were grouped into it: it must still call
                self._queue.anchor(message.intent_id)
        if message.slot:
            self._in_flight[message.priority == Priority.CRITICAL] -= 1
        if message.backend_ok is not None:
            self._breaker = record(
                self._breaker,
                ok=message.backend_ok,
                now=self._clock(),
                threshold=self._conf.breaker_threshold,
            )
            if self._breaker.state == BreakerState.OPEN and not message.backend_ok:
                log.error(
                    "backend unreachable: breaker open for %.0fs",
                    self._conf.breaker_cool_off_seconds,
                )
        if message.retry_after is not None:
            self._paused_until = max(self._paused_until, self._clock() + message.retry_after)
        if message.requeue is not None:
            self._queue.add(message.requeue, at=self._clock(), front=True)

    # --- resolved before the call, and grouped ---------------------------------------------

    def _on_resolved(self, message: SensorResolved) -> None:
        now = self._clock()
        self._resolves.note(message.sensor_id, message.timestamp, message.idempotency_key, now)
        # Ladders of the sensor's earlier alerts end; a callback still waiting is cancelled.
        self._submit(self._jobs.sensor_resolved(message))
        for entry in self._queue.calls_of(message.sensor_id):
            assert isinstance(entry.work, DialIntent)  # noqa: S101 - only calls are indexed
            if entry.work.alert.timestamp <= message.timestamp:
                self._queue.cancel(entry)
                self._cancel(entry.work, message.idempotency_key)

    def _cancel(self, intent: DialIntent, resolved_by: str) -> None:
        self._flush_marks()  # the cancel job waits for the record's 'queued' first
        self._cancelling.add(intent.intent_id)
        self._submit(self._jobs.cancel(intent, resolved_by))

    def _defer_waiting_calls(self) -> None:
        """A fleet incident opened: every waiting non-critical call becomes a task now.

        Not when it reaches the head of its queue: behind thousands of tasks waiting for budget
        that could take hours.
        """
        for entry in list(self._queue.waiting_calls(except_priority=Priority.CRITICAL)):
            assert isinstance(entry.work, DialIntent)  # noqa: S101 - waiting_calls gives calls
            self._queue.cancel(entry)
            self._defer(entry.work, Reason.FLEET_INCIDENT, self._incident_detail())

    # --- choosing what goes next -----------------------------------------------------------

    def _pump(self) -> None:
        """Start as much queued work as budget, pause, breaker, occupancy and caps allow."""
        now = self._clock()
        self._pump_owed = False
        self._flush_marks()
        self._queue.end_delays(now)  # the heap holds no more than the delays still running
        for stale in self._queue.expire_stale(now, self._governance):
            self._defer(stale.call, stale.reason, stale.detail)
        started: list[tuple[Queued, bool]] = []
        while (choice := self._choose(now)) is not None:
            priority, batched = choice
            if not batched and not self._may_send(now, critical=priority == Priority.CRITICAL):
                break
            item = self._queue.pop(priority)
            if isinstance(item.work, DialIntent):
                self._calls_in_flight.add(item.work.intent_id)
            if not batched:
                self._in_flight[priority == Priority.CRITICAL] += 1
                self._prepaid.started(now)
            started.append((item.work, not batched))
            if self._breaker.state == BreakerState.HALF_OPEN:
                break  # one probe at a time
        # Tasks that deferrals queued on the way are recorded before any of them can start.
        self._flush_marks()
        if started:  # one hand-off to the loop per round, however many start
            self._submit(self._jobs.run_all(started))
        self._publish_depth()
        if self._queue:
            self._wake_at(now + _IDLE_TICK)

    def _may_send(self, now: float, *, critical: bool = False) -> bool:
        """One request may leave now: no 429 pause, the breaker allows it, budget is there."""
        if now < self._paused_until:
            self._wake_at(self._paused_until)
            return False
        self._breaker, allowed = allow(
            self._breaker, now=now, cool_off=self._conf.breaker_cool_off_seconds
        )
        if not allowed:
            self._wake_at(self._breaker.opened_at + self._conf.breaker_cool_off_seconds)
            return False
        free = sum(self._caps[critical] - self._in_flight[critical] for critical in (True, False))
        wait = self._prepaid.wait(now, queued=len(self._queue), free=free, critical=critical)
        if wait > 0:
            self._wake_at(now + wait)
            return False
        return True

    def _choose(self, now: float) -> tuple[Priority, bool] | None:
        """The priority whose head goes next, batched?; acts on what the queue met on the way."""
        choice = self._queue.choose(
            now,
            Conditions(
                rules=self._governance,
                occupancy=self._occupancy,
                incident=None if self._incident is None else self._incident_detail(),
                paused=self._controls.dialing_paused is not None,
                in_flight=self._in_flight,
                caps=self._caps,
                batching=self._batching,
            ),
        )
        for deferral in choice.deferrals:
            self._defer(deferral.call, deferral.reason, deferral.detail)
        if choice.wake_at is not None:
            self._wake_at(choice.wake_at)
        return None if choice.priority is None else (choice.priority, choice.batched)

    def _batching(self, priority: Priority) -> bool:
        backends = self._jobs.backends
        return backends is not None and backends.batching(priority)

    def _defer(self, work: Queued, reason: Reason, detail: str) -> None:
        """Turn waiting dial work into a task (it was persisted: the task replaces it)."""
        assert isinstance(work, DialIntent)  # noqa: S101 - only dial work is deferred here
        if work.attempt > 1:  # a re-attempt of a called alert: its ladder ends with a task
            self._submit(self._jobs.reattempt_ended(work, f"{reason.value}: {detail}", task=True))
            self._submit(self._jobs.forget(work))
            return
        # Queued here, not told to ourselves: its record is written with the next flush of
        # marks, which comes before any job of this message starts (see _pump).
        self._queue_work(
            TaskIntent(alert=work.alert, reason=reason, due=self._clock(), detail=detail)
        )
        self._submit(self._jobs.forget(work))

    def _incident_detail(self) -> str:
        assert self._incident is not None  # noqa: S101 - only asked during an incident
        since = iso(self._incident.since)
        return (
            f"fleet incident since {since} ({self._incident.sensors} sensors alerting): "
            "only critical alerts are called"
        )

    def _wake_at(self, at: float) -> None:
        if self._tick_at is not None and self._tick_at <= at:
            return
        self._tick_at = at
        assert self._loop is not None  # noqa: S101 - on_start ran
        loop, ref = self._loop.loop, self.actor_ref
        delay = max(0.0, at - self._clock())

        def tick() -> None:
            with contextlib.suppress(pykka.ActorDeadError):  # stopped meanwhile: nothing to wake
                ref.tell(PumpTick())

        loop.call_soon_threadsafe(loop.call_later, delay, tick)

    def _submit(self, job: Coroutine[Any, Any, None]) -> None:
        """Hand `job` to the loop once this message is handled, with the others it asked for."""
        self._outbox.append(job)

    def _dispatch(self) -> None:
        """One hand-off to the loop per message: its jobs start in order in one loop step.

        So the records of newly queued work and the last checks of the round that starts it
        leave in one round trip, and a queue entry is never removed before it was written.
        """
        if self._outbox:
            assert self._loop is not None  # noqa: S101 - on_start ran
            jobs, self._outbox = self._outbox, []
            self._loop.submit(self._jobs.start(jobs))

    # --- what operators see ----------------------------------------------------------------

    def _publish_depth(self) -> None:
        for priority, waiting in self._queue.live.items():
            self._stats.queue_depth.labels(priority.label).set(waiting)

    def _status(self) -> dict[str, Any]:
        now = self._clock()
        occ = self._occupancy
        incident, held = self._incident, self._controls.dialing_paused
        self._queue.end_delays(now)
        return {
            "dialingPaused": None if held is None else {"by": held.by, "since": iso(held.since)},
            "fleetIncident": None
            if incident is None
            else {"since": iso(incident.since), "sensors": incident.sensors},
            "queueDepth": {priority.label: n for priority, n in self._queue.live.items()},
            # Calls not decided yet (queued or dialing); queued tasks are decided (deferred).
            "callsUndecided": len(self._calls_in_flight) + self._queue.calls_waiting,
            "waitingPendingDelay": self._queue.delayed,
            "inFlight": sum(self._in_flight.values()),
            "pausedUntil": iso(self._paused_until) if self._paused_until > now else None,
            "rateBudget": {
                "perMinute": self._conf.rate_per_minute,
                "burst": self._conf.burst,
                "takenHere": self._prepaid.taken,
            },
            "backendBreaker": self._breaker.state.value,
            "occupancy": None
            if occ is None
            else {
                "occupancy": round(occ.occupancy, 3),
                "waiting": occ.waiting,
                "ok": occ.ok,
                "governed": occ.governed,
                "observedAt": iso(occ.observed_at),
                "detail": occ.detail or None,
            },
        }
