"""DialJobs: the dialer's loop side — starts each job the dialer asks for on its loop.

Rounds of calls (their last checks, then each call placed as its own task), tasks, cancels
after a resolve, and the occupancy poll. Results go back to the dialer actor as messages
(DialFinished, OccupancyObserved, Withdrawn, TaskIntent); nothing here touches its state.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import redis

from tripline.actors._loop import ride_out
from tripline.actors.dialing.follow import Follower
from tripline.actors.dialing.gate import Call, Checks, LastChecks
from tripline.actors.dialing.place import Placer, finished_with
from tripline.actors.dialing.profiles import Profiles
from tripline.actors.dialing.records import Records
from tripline.actors.dialing.tasks import Tasks
from tripline.adapters.backends import Backends, BackendsFactory
from tripline.adapters.redis_io import lane, urgently
from tripline.adapters.store import FROM_PENDING, Keys
from tripline.conf.schema import (
    CrmConfig,
    DialerConfig,
    OutcomesConfig,
    ReachConfig,
    RedisConfig,
)
from tripline.messages import (
    DialFinished,
    DialIntent,
    OccupancyObserved,
    Outcome,
    Priority,
    Reason,
    SensorResolved,
)
from tripline.pipeline.caps import CapRules
from tripline.pipeline.comply import ComplyRules
from tripline.pipeline.dial_queue import Queued, Work
from tripline.pipeline.govern import Occupancy
from tripline.service.controls import OperatorControls
from tripline.service.stats import Stats

log = logging.getLogger("tripline.dialer")


class DialJobs:
    """Runs on the dialer's loop: records, last checks, backend calls, tasks, the poll."""

    def __init__(
        self,
        *,
        conf: DialerConfig,
        redis_conf: RedisConfig,
        keys: Keys,
        queue_key: str,
        pending_key: str,
        routing: dict[str, int],
        rules: ComplyRules,
        caps: CapRules,
        controls: OperatorControls,
        record_ttl: int,
        stats: Stats,
        clock: Callable[[], float],
        tell: Callable[[object], None],
        instance: str = "tripline-1",
        reach: ReachConfig | None = None,
        outcomes: OutcomesConfig | None = None,
        crm: CrmConfig | None = None,
    ) -> None:
        """Keep collaborators; connect() and open() must run on the loop."""
        self._conf, self._routing, self._stats, self._clock, self._tell = (
            conf,
            routing,
            stats,
            clock,
            tell,
        )
        self._instance, self._rules, self._controls, self._ttl = (
            instance,
            rules,
            controls,
            record_ttl,
        )
        self._reach, self._outcomes = reach or ReachConfig(), outcomes or OutcomesConfig()
        self._crm = crm or CrmConfig()
        self.follower: Follower | None = None
        self.records = Records(
            conf=conf,
            redis_conf=redis_conf,
            keys=keys,
            queue_key=queue_key,
            pending_key=pending_key,
            record_ttl=record_ttl,
            stats=stats,
            clock=clock,
            tell=tell,
        )
        # The flags are read again at dialing only from a CRM the dialer was given.
        self._profiles = (
            None if crm is None else Profiles(conf=crm, records=self.records, clock=clock)
        )
        self.checks = LastChecks(
            records=self.records,
            rules=rules,
            caps=caps,
            controls=controls,
            stats=stats,
            clock=clock,
            tell=tell,
            max_alert_age=max_alert_age(conf),
            profiles=self._profiles,
        )
        self.backends: Backends | None = None
        self._running: set[asyncio.Task[None]] = set()  # strong refs: tasks must not vanish

    @property
    def redis(self) -> Any:  # noqa: ANN401 - redis.asyncio.Redis
        """The loop's Redis client (after connect)."""
        return self.records.redis

    async def connect(self) -> None:
        """Connect to Redis (on the loop)."""
        await self.records.connect()

    async def open(
        self, factory: BackendsFactory, take_budget: Callable[[], Awaitable[None]], poll: bool
    ) -> list[Work]:
        """Build the backends, start polling; returns the work persisted before a restart."""
        backends = self.backends = factory(take_budget)
        self.follower = Follower(
            records=self.records,
            backends=backends,
            instance=self._instance,
            rules=self._rules,
            reach=self._reach,
            outcomes=self._outcomes,
            crm_conf=self._crm,
            controls=self._controls,
            record_ttl=self._ttl,
            stats=self._stats,
            clock=self._clock,
            tell=self._tell,
        )
        self.checks.follower = self.follower
        self._follow_task = asyncio.get_running_loop().create_task(self.follower.run_forever())
        self._placer = Placer(
            follower=self.follower,
            conf=self._conf,
            backends=backends,
            records=self.records,
            checks=self.checks,
            routing=self._routing,
            stats=self._stats,
            clock=self._clock,
            tell=self._tell,
        )
        self._tasks = Tasks(
            conf=self._conf,
            backends=backends,
            records=self.records,
            clock=self._clock,
            tell=self._tell,
        )
        if poll and backends.observer is not None:
            self._poller = asyncio.get_running_loop().create_task(self._poll_forever())
        elif backends.observer is None:
            self._tell(
                OccupancyObserved(occupancy=Occupancy(0.0, 0, self._clock(), governed=False))
            )
        return await self.records.restore()

    async def close(self) -> None:
        """Close backends and Redis."""
        if self.follower is not None:
            self._follow_task.cancel()
            await self.follower.close()
        if self._profiles is not None:
            await self._profiles.close()
        if self.backends is not None:
            for backend in self.backends.owned:
                await backend.close()
        await self.records.close()

    # --- jobs the dialer asks for ----------------------------------------------------------

    async def mark_queued(self, works: list[Work]) -> None:
        """Persist and record newly queued work (see Records.mark_queued)."""
        await self.records.mark_queued(works)

    async def forget(self, work: Work) -> None:
        """Drop work from the persisted queue (done, or replaced by a task)."""
        await self.records.forget(work)

    async def sensor_resolved(self, message: SensorResolved) -> None:
        """Ladders of the sensor's earlier alerts end (see Follower.sensor_resolved)."""
        if self.follower is not None:
            await self.follower.sensor_resolved(
                message.customer_id, message.sensor_id, message.timestamp
            )

    async def reattempt_ended(self, intent: DialIntent, why: str, *, task: bool) -> None:
        """A queued re-attempt will not be placed: its ladder ends (a task when `task`)."""
        if self.follower is not None:
            await self.follower.ended_before_dialing(intent, why, task=task)

    async def cancel(self, intent: DialIntent, resolved_by: str) -> None:
        """The sensor resolved before the call was placed: cancel it, unless others joined it."""
        key = intent.intent_id
        finished = DialFinished(intent_id=key, priority=intent.priority, slot=False)
        records = self.records
        if intent.attempt > 1:  # a re-attempt: the ladder ends, nothing else was claimed
            try:
                await self.reattempt_ended(
                    intent, f"the sensor resolved ({resolved_by})", task=False
                )
                await records.forget(intent)
            finally:
                self._tell(finished)
            return
        try:
            await records.after_marks([key])
            if not await ride_out(lambda: self.checks.withdraw(intent)):
                await records.note(
                    key,
                    "sensor_resolved",
                    detail=f"resolved by {resolved_by}; the call stays for the alerts grouped in",
                )
                finished = finished_with(finished, requeue=intent)
                return
            if await records.record(
                key,
                state=Outcome.SUPPRESSED,
                reason=Reason.RESOLVED,
                allowed_from=FROM_PENDING,
                detail=f"the sensor resolved ({resolved_by}) before the call was placed",
            ):
                self._stats.decided(
                    intent.alert, Outcome.SUPPRESSED, Reason.RESOLVED, resolvedBy=resolved_by
                )
            await records.forget(intent)
        except Exception:
            log.exception("dialer: cancelling %s failed; it stays queued", key)
            finished = finished_with(finished, requeue=intent)
        finally:
            self._tell(finished)

    async def run_all(self, works: list[tuple[Queued, bool]]) -> None:
        """Start one pump round: its calls together (dial_round), each task as its own task.

        Critical calls make a round of their own, started first: in one round with the other
        calls a pump took along, each of their steps would wait for the others'; its Redis
        commands, and its calls' (placed from its task), take the urgent lane. Each round's
        last checks are sent from here, before anything awaits: they share the round trip of
        the batch that records these calls as queued (started just before) instead of taking
        one of their own after it.
        """
        calls = [(work, slot) for work, slot in works if isinstance(work, DialIntent)]
        critical = [call for call in calls if call[0].priority == Priority.CRITICAL]
        rest = [call for call in calls if call[0].priority != Priority.CRITICAL]
        for part, urgent in ((critical, True), (rest, False)):
            if part:
                with lane(urgent=urgent):  # a critical round's steps: Redis' urgent lane
                    checks = self.checks.send(part)
                job = self.dial_round(part, checks)
                await self._spawn(urgently(job) if urgent else job)
        for work, slot in works:
            if not isinstance(work, DialIntent):
                await self._spawn(self._tasks.raise_task(work, slot=slot))

    async def start(self, jobs: list[Coroutine[Any, Any, None]]) -> None:
        """Start what one message to the dialer asked for, in its order.

        Their first steps then run one after the other before the auto-pipeline's next batch
        leaves: a pump's 'queued' records, and the last checks of the round it starts, share
        one round trip.
        """
        for job in jobs:
            await self._spawn(job)

    async def dial_round(self, calls: list[Call], checks: Checks) -> None:
        """Start one pump round's calls (with their concurrency slot flags).

        The last checks of every call (sent by LastChecks.send) share one round trip, the
        moves to 'dialing' another; then each call is placed as its own task, so a slow one
        holds up no other (a call per task with a sequential await per step would make the
        loop's time the dialer's limit).
        """
        # Nothing is decided before the records say 'queued': a finished call's queue entry
        # is removed only after the batch that wrote it.
        await self.records.after_marks([intent.intent_id for intent, _ in calls])
        # By the call's own entry: a replay can bring one key twice into a round.
        unsettled = {id(call): call for call in calls}
        try:
            ready = await self.checks.decide(checks, unsettled)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            # Raised before anything was sent: the calls not settled yet go back to the queue
            # and try later. Caps already counted are re-entrant for the same call: nothing
            # counts twice.
            log.warning("%d calls wait for Redis: %r", len(unsettled), exc)
            for intent, slot in unsettled.values():
                self._tell(
                    DialFinished(
                        intent_id=intent.intent_id,
                        priority=intent.priority,
                        slot=slot,
                        requeue=intent,
                        retry_after=2.0,
                    )
                )
            return
        for intent, slot in ready:
            await self._spawn(self._placer.place(intent, slot))

    async def _spawn(self, job: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(job)
        self._running.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("dialer: a job failed: %r", exc, exc_info=exc)

    async def _poll_forever(self) -> None:
        assert self.backends is not None  # noqa: S101 - open() made them
        observer = self.backends.observer
        assert observer is not None  # noqa: S101 - checked by open()
        while True:
            try:
                occupancy = await observer.occupancy(self._clock())
            except Exception as exc:  # a failed poll holds non-critical work, nothing worse
                occupancy = Occupancy(1.0, 0, self._clock(), ok=False, detail=repr(exc))
            self._tell(OccupancyObserved(occupancy=occupancy))
            await asyncio.sleep(self._conf.occupancy_poll_seconds)


def max_alert_age(conf: DialerConfig) -> dict[Priority, float]:
    """[dialer] max_alert_age_seconds by priority (a priority left out has no limit)."""
    return {Priority.from_label(k): float(v) for k, v in conf.max_alert_age_seconds.items()}
