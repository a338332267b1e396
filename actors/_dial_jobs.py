"""The dialer's loop side: each job sends, records the outcome in Redis, and reports back.

Nothing here touches the actor's state; results go back as DialFinished / OccupancyObserved.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
import redis

from actors._loop import AutoPipeline, async_redis, ride_out
from conf.schema import DialerConfig
from messages import (
    DialFinished,
    DialIntent,
    OccupancyObserved,
    Outcome,
    Priority,
    Reason,
    State,
    TaskIntent,
    Withdrawn,
)
from pipeline.caps import Cap, cap_args
from pipeline.comply import Blocked, ComplyRules, check_window
from pipeline.dial import Answer, Gate, backoff, gate, retry_after
from pipeline.dial_queue import Queued, StoredTask, Work
from pipeline.govern import Occupancy
from pipeline.maintenance import Window
from tripline.backends import Backend, Result
from tripline.maintenance import OperatorControls
from tripline.stats import Stats
from tripline.store import (
    ANNOTATE_LUA,
    CANCEL_LUA,
    CAP_LUA,
    FROM_PENDING,
    GROUP_LUA,
    TERMINAL,
    TRANSITION_LUA,
    Keys,
    annotate_args,
    iso,
    text,
    transition_args,
    work_from_json,
    work_to_json,
)

log = logging.getLogger("tripline.dialer")


class Observer(Protocol):
    """A backend that can report queue occupancy."""

    async def occupancy(self, now: float) -> Occupancy:
        """Poll the contact center."""
        ...


@dataclass(frozen=True, slots=True)
class CapRules:
    """The [comply] caps: per phone number and per customer, each over several windows."""

    number: tuple[Cap, ...] = ()
    customer: tuple[Cap, ...] = ()


@dataclass
class Backends:
    """Which backend serves which priority, which raises tasks, which reports occupancy."""

    by_priority: dict[Priority, Backend]
    tasks: Backend
    observer: Observer | None = None
    owned: list[Backend] = field(default_factory=list)
    """Closed at shutdown."""

    @classmethod
    def uniform(cls, backend: Backend, observer: Observer | None = None) -> Backends:
        """One backend for everything (tests, the log backend)."""
        return cls(dict.fromkeys(Priority, backend), backend, observer, [backend])

    def batching(self, priority: Priority) -> bool:
        """Whether work of `priority` is batched (no token or slot per item)."""
        return bool(getattr(self.by_priority[priority], "batching", False))


BackendsFactory = Callable[[Callable[[], Awaitable[None]]], Backends]
"""Builds the backends on the loop, given the budget's async `take` for unbudgeted requests."""


class DialJobs:
    """Runs on the dialer's loop: records, caps, backend calls, occupancy polling."""

    def __init__(
        self,
        *,
        conf: DialerConfig,
        redis_url: str,
        keys: Keys,
        queue_key: str,
        pending_key: str,
        routing: dict[str, int],
        rules: ComplyRules,
        caps: CapRules,
        maintenance: OperatorControls,
        record_ttl: int,
        stats: Stats,
        clock: Callable[[], float],
        tell: Callable[[object], None],
    ) -> None:
        """Keep collaborators; open() must run on the loop."""
        self._conf, self._redis_url, self._keys, self._queue_key = conf, redis_url, keys, queue_key
        self._pending_key, self._maintenance = pending_key, maintenance
        self._routing, self._rules, self._caps, self._stats = routing, rules, caps, stats
        self._clock, self._tell, self._ttl = clock, tell, record_ttl
        self._marks: dict[str, asyncio.Task[Any]] = {}
        self._running: set[asyncio.Task[None]] = set()  # strong refs: tasks must not vanish

    async def connect(self) -> None:
        """Connect to Redis (on the loop)."""
        self.redis = async_redis(self._redis_url)
        # Every step shares round trips with the others of its loop iteration (AutoPipeline),
        # which also reloads a script Redis lost in a restart.
        self._auto = AutoPipeline(self.redis)
        self._sha = {
            name: self._auto.script(source)
            for name, source in (
                ("transition", TRANSITION_LUA),
                ("group", GROUP_LUA),
                ("annotate", ANNOTATE_LUA),
                ("cap", CAP_LUA),
                ("cancel", CANCEL_LUA),
            )
        }

    async def open(
        self, factory: BackendsFactory, take_budget: Callable[[], Awaitable[None]], poll: bool
    ) -> list[Work]:
        """Build the backends, start polling; returns the work persisted before a restart."""
        self.backends = factory(take_budget)
        if poll and self.backends.observer is not None:
            self._poller = asyncio.get_running_loop().create_task(self._poll_forever())
        elif self.backends.observer is None:
            self._tell(
                OccupancyObserved(occupancy=Occupancy(0.0, 0, self._clock(), governed=False))
            )
        stored = await self.redis.hgetall(self._queue_key)
        restored: list[Work] = []
        for entry, blob in stored.items():
            try:
                restored.append(work_from_json(blob if isinstance(blob, bytes) else blob.encode()))
            except Exception:  # one unreadable entry must not keep every call from starting
                log.exception(
                    "dialer: queued entry %r is unreadable; left in %s for a person",
                    entry,
                    self._queue_key,
                )
        return restored

    async def close(self) -> None:
        """Close backends and Redis."""
        for backend in self.backends.owned:
            await backend.close()
        await self._auto.aclose()
        await self.redis.aclose(close_connection_pool=True)

    # --- queue bookkeeping -------------------------------------------------------------------

    async def mark_queued(self, works: list[Work]) -> None:
        """Persist queued work and record it, one pipeline per batch.

        _run waits for this, so a record never shows 'dialing' before 'queued'.
        """
        task = asyncio.current_task()
        assert task is not None  # noqa: S101 - always inside a task
        for work in works:
            self._marks[work.alert.idempotency_key] = task
        now = self._clock()
        commands = [_mark_args(self._keys, work, now) for work in works]
        blobs: dict[Any, Any] = {_queue_id(work): work_to_json(work) for work in works}
        window_ms = int(self._conf.group_window_seconds * 1000)
        calls = [w for w in works if isinstance(w, DialIntent)] if window_ms else []

        async def run() -> list[Any]:
            # Futures, not coroutines: gather would make a task of each of these hundreds.
            steps = [self._auto.send("HSET", self._queue_key, *itertools.chain(*blobs.items()))]
            steps += [self._auto.send_script(self._sha["transition"], k, a) for k, a in commands]
            steps += [
                self._auto.send_script(
                    self._sha["group"],
                    _group_keys(self._keys, call),
                    [call.intent_id, call.alert.reference_id, window_ms, self._ttl],
                )
                for call in calls
            ]
            results = await asyncio.gather(*steps, return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException):
                    raise result  # an outage fails them all; ride_out runs the batch again
            return results

        results = await ride_out(run)
        marked = results[1 : 1 + len(works)]
        decided = []
        for work, applied in zip(works, marked, strict=True):
            if isinstance(work, TaskIntent) and applied == 1:
                self._stats.decided(
                    work.alert, work.outcome, work.reason, now=now, detail=work.detail
                )
                decided.append(work.alert.idempotency_key)
        self._unindex_later(decided)
        joined = [
            (call, text(primary), text(ref))
            for call, (first, primary, ref) in zip(calls, results[1 + len(works) :], strict=True)
            if not first
        ]
        if joined:
            await self._join(joined)

    async def _join(self, joined: list[tuple[DialIntent, str, str]]) -> None:
        """Alerts of a customer whose call is already on its way: they ride on that call.

        Each is listed in the call's context (what the agent sees) and recorded
        suppressed/grouped, pointing at the alert whose record holds the call.
        """
        pipe = self.redis.pipeline(transaction=False)
        for call, _, ref in joined:
            pipe.rpush(self._keys.siblings(ref), orjson.dumps(_sibling(call)))
            pipe.expire(self._keys.siblings(ref), self._ttl)
        await ride_out(pipe.execute)
        for call, primary, _ in joined:
            if await self._record(
                call.intent_id,
                state=Outcome.SUPPRESSED,
                reason=Reason.GROUPED,
                allowed_from=FROM_PENDING,
                groupedInto=primary,
                detail=f"one call for the customer's alerts: grouped into {primary}",
            ):
                self._stats.decided(
                    call.alert, Outcome.SUPPRESSED, Reason.GROUPED, groupedInto=primary
                )
            await self.forget(call)
        self._tell(Withdrawn(keys=tuple(call.intent_id for call, _, _ in joined)))

    async def cancel(self, intent: DialIntent, resolved_by: str) -> None:
        """The sensor resolved before the call was placed: cancel it, unless others joined it."""
        key = intent.intent_id
        finished = DialFinished(intent_id=key, priority=intent.priority, slot=False)
        try:
            await self._after_marks([key])
            if not await ride_out(lambda: self._withdraw_command(intent)):
                await self._note(
                    key,
                    "sensor_resolved",
                    detail=f"resolved by {resolved_by}; the call stays for the alerts grouped in",
                )
                finished = _with(finished, requeue=intent)
                return
            if await self._record(
                key,
                state=Outcome.SUPPRESSED,
                reason=Reason.RESOLVED,
                allowed_from=FROM_PENDING,
                detail=f"the sensor resolved ({resolved_by}) before the call was placed",
            ):
                self._stats.decided(
                    intent.alert, Outcome.SUPPRESSED, Reason.RESOLVED, resolvedBy=resolved_by
                )
            await self.forget(intent)
        except Exception:
            log.exception("dialer: cancelling %s failed; it stays queued", key)
            finished = _with(finished, requeue=intent)
        finally:
            self._tell(finished)

    async def run_all(self, works: list[tuple[Queued, bool]]) -> None:
        """Start one pump round: its calls together (dial_round), each task as its own task.

        Critical calls make a round of their own, started first: in one round with the other
        calls a pump took along, each of their steps waited for the others' (README
        "Performance"). Each round's last checks are sent from here, before anything awaits:
        they share the round trip of the batch that records these calls as queued (started
        just before) instead of taking one of their own after it.
        """
        calls = [(work, slot) for work, slot in works if isinstance(work, DialIntent)]
        critical = [call for call in calls if call[0].priority == Priority.CRITICAL]
        rest = [call for call in calls if call[0].priority != Priority.CRITICAL]
        for part in (critical, rest):
            if part:
                await self._spawn(self.dial_round(part, self._last_checks(part)))
        for work, slot in works:
            if not isinstance(work, DialIntent):
                await self._spawn(self.run(work, slot=slot))

    async def start(self, jobs: list[Coroutine[Any, Any, None]]) -> None:
        """Start what one message to the dialer asked for, in its order.

        Their first steps then run one after the other before the auto-pipeline's next batch
        leaves: a pump's 'queued' records, and the last checks of the round it starts, share
        one round trip.
        """
        for job in jobs:
            await self._spawn(job)

    async def _spawn(self, job: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(job)
        self._running.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("dialer: a job failed: %r", exc, exc_info=exc)

    async def run(self, queued: TaskIntent | StoredTask, *, slot: bool) -> None:
        """Raise one task and tell the actor how it went."""
        key = queued.key if isinstance(queued, StoredTask) else queued.alert.idempotency_key
        finished = DialFinished(intent_id=key, priority=queued.priority, slot=slot)
        await self._after_marks([key])
        if isinstance(queued, StoredTask):
            blob = await ride_out(
                lambda: self._auto.execute("HGET", self._queue_key, f"task:{key}")
            )
            if blob is None:  # done already (replayed, or by a previous life)
                self._tell(finished)
                return
            work = work_from_json(blob if isinstance(blob, bytes) else str(blob).encode())
        else:
            work = queued
        assert isinstance(work, TaskIntent)  # noqa: S101 - calls go through dial_round
        try:
            finished = await self._raise_task(work, finished)
        except Exception:
            log.exception("dialer: %s failed", key)
        finally:
            if finished.requeue is None:
                await self.forget(work)
            self._tell(finished)

    async def forget(self, work: Work) -> None:
        """Drop work from the persisted queue (done, or replaced by a task)."""
        try:
            await ride_out(lambda: self._auto.execute("HDEL", self._queue_key, _queue_id(work)))
        except (redis.ConnectionError, redis.TimeoutError):
            # Left behind, it is restored after a restart and refused by its record then.
            log.warning("queue entry of %s not removed", work.alert.idempotency_key)

    # --- dialing -------------------------------------------------------------------------------

    async def dial_round(self, calls: list[tuple[DialIntent, bool]], checks: _Checks) -> None:
        """Start one pump round's calls (with their concurrency slot flags).

        The last checks of every call (sent by _last_checks) share one round trip, the moves
        to 'dialing' another; then each call is placed as its own task, so a slow one holds up
        no other. A call per task with a sequential await per step cost most of the dialer
        loop's time in profiles.
        """
        # Nothing is decided before the records say 'queued': a finished call's queue entry
        # is removed only after the batch that wrote it.
        await self._after_marks([intent.intent_id for intent, _ in calls])
        # By the call's own entry: a replay can bring one key twice into a round.
        unsettled = {id(call): call for call in calls}
        try:
            ready = await self._gate(checks, unsettled)
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
            await self._spawn(self._place(intent, slot))

    async def _after_marks(self, keys: list[str]) -> None:
        """Wait until the batches that record this work as queued have run."""
        marks = {self._marks.pop(key, None) for key in keys}
        current = asyncio.current_task()
        waiting = [m for m in marks if m is not None and m is not current and not m.done()]
        if waiting:
            await asyncio.wait(waiting)

    def _last_checks(self, calls: list[tuple[DialIntent, bool]]) -> _Checks:
        """Compliance at the moment of dialing, and the caps' and do-not-call requests sent.

        Not a coroutine: the requests are queued before the loop runs anything else, so they
        join the batch that records the round's calls as queued.
        """
        checks = _Checks(now=self._clock())
        for call in calls:
            intent, _ = call
            blocked = check_window(
                intent.customer,
                now=checks.now,
                rules=self._rules,
                alert_type=intent.alert.alert_type,
            )
            if blocked is not None:  # work may have waited in the queue past the window
                checks.blocked.append((call, blocked))
                continue
            try:
                checks.sent.append((call, self._gate_commands(intent, checks.now)))
                # A maintenance window opened while the call waited (its pending delay, a
                # backlog): withdraw it, unless other alerts were grouped into it.
                if (window := self._maintenance.covering(intent.alert, checks.now)) is not None:
                    checks.withdrawals[id(call)] = (window, self._withdraw_command(intent))
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                checks.failed = exc  # the calls not checked yet go back to the queue
                break
        return checks

    async def _gate(
        self, checks: _Checks, unsettled: dict[int, tuple[DialIntent, bool]]
    ) -> list[tuple[DialIntent, bool]]:
        """Decide on the last checks' answers, then move the calls that pass to 'dialing'.

        Returns the calls that may be placed now; every other one is finished here (a task,
        a suppression, or skipped because its record moved on). Each call leaves `unsettled`
        once finished or ready: if Redis fails midway, only the rest go back to the queue.
        """
        now = checks.now
        for call, blocked in checks.blocked:
            intent, slot = call
            del unsettled[id(call)]
            self._tell(blocked.task(intent.alert))
            await self._finish(intent, slot)
        if checks.failed is not None:
            raise checks.failed
        checked = checks.sent
        replies = await asyncio.gather(*(f for _, futures in checked for f in futures))
        withdrawn = {
            call: window
            for (call, (window, future)) in checks.withdrawals.items()
            if await future == 1
        }
        passed: list[tuple[DialIntent, bool]] = []
        at = 0
        for call, futures in checked:
            intent, slot = call
            answers, at = replies[at : at + len(futures)], at + len(futures)
            if (window := withdrawn.get(id(call))) is not None:
                await self._release_caps(intent)  # whichever counted it
                if await self._record(
                    intent.intent_id,
                    state=Outcome.SUPPRESSED,
                    reason=Reason.MAINTENANCE,
                    allowed_from=FROM_PENDING,
                    detail=window.detail(),
                ):
                    self._stats.decided(intent.alert, Outcome.SUPPRESSED, Reason.MAINTENANCE)
                del unsettled[id(call)]  # recorded (a Redis failure above requeues it)
                await self._finish(intent, slot)
                continue
            verdict, release = gate(
                on_dnc_list=bool(answers[0]),
                number_ok=bool(answers[1][0]) if self._caps.number else None,
                customer_ok=bool(answers[-1][0]) if self._caps.customer else None,
            )
            if verdict == Gate.DIAL:
                passed.append(call)
                continue
            await self._release_caps(
                intent, number="number" in release, customer="customer" in release
            )
            if verdict == Gate.DO_NOT_CALL:
                listed = Blocked(
                    Reason.DO_NOT_CALL,
                    now,
                    "the number joined the internal do-not-call list while queued",
                    {"rule": "internal_dnc_list"},
                )
                self._tell(listed.task(intent.alert))
            else:
                reason = Reason(verdict.value)
                if await self._record(
                    intent.intent_id,
                    state=Outcome.SUPPRESSED,
                    reason=reason,
                    allowed_from=FROM_PENDING,
                ):
                    self._stats.decided(intent.alert, Outcome.SUPPRESSED, reason)
            del unsettled[id(call)]  # recorded (a Redis failure above requeues it)
            await self._finish(intent, slot)
        ready = await self._to_dialing(passed)
        for call in passed:  # moved to dialing, or finished as skipped
            del unsettled[id(call)]
        return ready

    def _withdraw_command(self, intent: DialIntent) -> asyncio.Future[Any]:
        """Withdraw a waiting call (1), or 0 when other alerts were grouped into it.

        Withdrawn, it gives back its group and the sensor's cooldown window, so the sensor's
        next real episode may call; grouped into, it stays for the alerts that joined it.
        """
        customer = intent.alert.customer_id
        keys = [
            self._keys.group_counts(customer),
            _group_keys(self._keys, intent)[0],
            self._keys.cooldown(customer, intent.alert.sensor_id),
        ]
        return self._auto.send_script(self._sha["cancel"], keys, [intent.intent_id])

    def _gate_commands(self, intent: DialIntent, now: float) -> list[asyncio.Future[Any]]:
        """The do-not-call re-check, then the number's and the customer's caps (if any)."""
        member = intent.intent_id
        futures = [self._auto.send("SISMEMBER", self._keys.dnc(), intent.customer.phone)]
        for caps, key in (
            (self._caps.number, self._keys.number_calls(intent.customer.phone)),
            (self._caps.customer, self._keys.customer_calls(intent.customer.customer_id)),
        ):
            if caps:
                args = cap_args(caps, now=now, member=member)
                futures.append(self._auto.send_script(self._sha["cap"], [key], args))
        return futures

    async def _to_dialing(
        self, calls: list[tuple[DialIntent, bool]]
    ) -> list[tuple[DialIntent, bool]]:
        """The record is the arbiter: only one path may move it to dialing, ever."""
        now = self._clock()
        moves = [
            transition_args(
                self._keys, i.intent_id, state=State.DIALING, now=now, allowed_from=FROM_PENDING
            )
            for i, _ in calls
        ]

        async def move() -> list[Any]:
            sha = self._sha["transition"]
            return await asyncio.gather(*(self._auto.send_script(sha, k, a) for k, a in moves))

        applied = await ride_out(move) if calls else []
        ready = []
        for (intent, slot), result in zip(calls, applied, strict=True):
            if result == 1:
                ready.append((intent, slot))
                continue
            log.info("dial %s skipped: its record is already past queued", intent.intent_id)
            await self._release_caps(intent)
            await self._finish(intent, slot)
        return ready

    async def _finish(self, intent: DialIntent, slot: bool) -> None:
        """A call that will not be placed: out of the persisted queue, its slot freed."""
        await self.forget(intent)
        self._tell(DialFinished(intent_id=intent.intent_id, priority=intent.priority, slot=slot))

    async def _place(self, intent: DialIntent, slot: bool) -> None:
        """Send one call and record what the backend answered; never resend after ambiguity."""
        done = DialFinished(intent_id=intent.intent_id, priority=intent.priority, slot=slot)
        try:
            backend = self.backends.by_priority[intent.priority]
            started = time.perf_counter()
            try:
                result = await self._send(
                    lambda: backend.dial(intent, self._routing.get(intent.priority.label, 5))
                )
            except Exception as exc:  # the request may have left: never requeue
                result = Result(Answer.UNCERTAIN, detail=f"error while dialing: {exc!r}"[:300])
            self._stats.stage_seconds.labels("dial").observe(time.perf_counter() - started)
            done = await self._after_dial(intent, result, done)
        except Exception as exc:
            log.exception("dialer: %s failed", intent.intent_id)
            # We cannot know whether the request left: never resend, hand it to a person.
            self._tell(
                TaskIntent(
                    alert=intent.alert,
                    reason=Reason.DIAL_UNCERTAIN,
                    due=self._clock(),
                    detail=f"internal error while dialing: {exc!r}"[:200],
                )
            )
        finally:
            if done.requeue is None:
                await self.forget(intent)
            self._tell(done)

    async def _after_dial(
        self, intent: DialIntent, result: Result, done: DialFinished
    ) -> DialFinished:
        key = intent.intent_id
        reached = result.answer != Answer.UNSENT
        if result.answer == Answer.DONE:
            facts = orjson.dumps(dict(intent.facts)).decode() if intent.facts else ""
            if await self._record(
                key,
                state=Outcome.CALLED,
                allowed_from=State.DIALING,
                callId=result.ref,
                detail=result.detail,
                facts=facts,
            ):
                self._stats.decided(intent.alert, Outcome.CALLED, callId=result.ref or "")
            return _with(done, backend_ok=True)
        if result.answer != Answer.UNCERTAIN:  # provably no call: it must not count
            await self._release_caps(intent)
        if result.answer in (Answer.RATE_LIMITED, Answer.UNSENT):
            # Not taken by the backend: back to the queue (a down backend opens the breaker).
            await self._record(
                key, state=State.QUEUED, allowed_from=State.DIALING, detail=result.detail
            )
            wait = (
                retry_after(result.retry_after, default=1.0)
                if (result.answer == Answer.RATE_LIMITED)
                else None
            )
            return _with(done, requeue=intent, retry_after=wait, backend_ok=reached)
        reason = Reason.DIAL_UNCERTAIN if result.answer == Answer.UNCERTAIN else Reason.DIAL_FAILED
        self._tell(
            TaskIntent(alert=intent.alert, reason=reason, due=self._clock(), detail=result.detail)
        )
        return _with(done, backend_ok=True)

    async def _release_caps(
        self, intent: DialIntent, *, number: bool = True, customer: bool = True
    ) -> None:
        """Give back the counts of a call that provably did not happen.

        Best effort: a count left behind by a Redis outage errs on the side of fewer calls.
        """
        commands = []
        if number and self._caps.number:
            commands.append(("ZREM", self._keys.number_calls(intent.customer.phone)))
        if customer and self._caps.customer:
            commands.append(("ZREM", self._keys.customer_calls(intent.customer.customer_id)))
        try:
            await asyncio.gather(*(self._auto.send(*c, intent.intent_id) for c in commands))
        except (redis.ConnectionError, redis.TimeoutError):
            log.warning("caps of %s not released (Redis unavailable)", intent.intent_id)

    # --- tasks ---------------------------------------------------------------------------------

    async def _raise_task(self, task: TaskIntent, done: DialFinished) -> DialFinished:
        key = task.alert.idempotency_key
        record = self._keys.record(key)
        outcome = await ride_out(lambda: self._auto.execute("HGET", record, "outcome"))
        if text(outcome) != task.outcome:  # e.g. a late uncertainty after a call
            return done
        # At most one task per alert, even if the same deferral is replayed.
        claim = iso(self._clock())
        if not await ride_out(lambda: self._auto.execute("HSETNX", record, "taskClaimed", claim)):
            return done
        result = await self._send(lambda: self.backends.tasks.create_task(task))
        if result.answer in (Answer.RATE_LIMITED, Answer.UNSENT):
            await self.redis.hdel(record, "taskClaimed")
            wait = (
                retry_after(result.retry_after, default=1.0)
                if (result.answer == Answer.RATE_LIMITED)
                else None
            )
            return _with(
                done,
                requeue=task,
                retry_after=wait,
                backend_ok=result.answer == Answer.RATE_LIMITED,
            )
        if result.answer == Answer.DONE:
            await self._note(key, "task_raised", taskId=result.ref)
        else:
            log.error("task for %s not raised (%s): %s", key, result.answer, result.detail)
            await self._note(key, "task_failed", taskError=f"{result.answer}: {result.detail}")
        return _with(done, backend_ok=True)

    # --- shared --------------------------------------------------------------------------------

    async def _send(self, attempt: Callable[[], Awaitable[Result]]) -> Result:
        """Call the backend, retrying only what provably never reached it."""
        result = await attempt()
        for n in range(self._conf.max_retries):
            if result.answer != Answer.UNSENT:
                break
            await asyncio.sleep(
                backoff(
                    n,
                    base=self._conf.backoff_base_seconds,
                    cap=self._conf.backoff_max_seconds,
                    jitter=random.random(),
                )
            )
            result = await attempt()
        return result

    async def _poll_forever(self) -> None:
        assert self.backends.observer is not None  # noqa: S101 - checked by open()
        while True:
            try:
                occupancy = await self.backends.observer.occupancy(self._clock())
            except Exception as exc:  # a failed poll holds non-critical work, nothing worse
                occupancy = Occupancy(1.0, 0, self._clock(), ok=False, detail=repr(exc))
            self._tell(OccupancyObserved(occupancy=occupancy))
            await asyncio.sleep(self._conf.occupancy_poll_seconds)

    async def _record(
        self,
        key: str,
        *,
        state: str,
        allowed_from: str = "",
        reason: Reason = Reason.NONE,
        **fields: str,
    ) -> bool:
        keys, args = transition_args(
            self._keys,
            key,
            state=state,
            now=self._clock(),
            reason=reason,
            allowed_from=allowed_from,
            **{k: v for k, v in fields.items() if v},
        )
        # An outcome that happened must be recorded: wait out a Redis outage for it.
        applied = await ride_out(lambda: self._auto.evalsha(self._sha["transition"], keys, args))
        if applied == 1 and state in TERMINAL:
            self._unindex_later([key])
        return bool(applied == 1)

    def _unindex_later(self, keys: list[str]) -> None:
        """Take decided alerts out of the pending index, once their outcome is recorded.

        Left there, the resume sweep read every alert's record once more only to remove it:
        10,000 per interval at 1,000 alerts/s, in pages that held up critical alerts (README
        "Performance"). Not waited for: it rides with the auto-pipeline's next batch (a round
        trip of its own per call held the dialer's slowest stage). If it fails the sweep
        still removes them.
        """
        if keys:
            self._auto.send("ZREM", self._pending_key, *keys).add_done_callback(_unindexed)

    async def _note(self, key: str, event: str, **fields: str) -> None:
        keys, args = annotate_args(self._keys, key, now=self._clock(), event=event, **fields)
        await ride_out(lambda: self._auto.evalsha(self._sha["annotate"], keys, args))


@dataclass
class _Checks:
    """A dial round's last checks, sent before its records were confirmed 'queued'."""

    now: float
    blocked: list[tuple[tuple[DialIntent, bool], Blocked]] = field(default_factory=list)
    """Outside the calling window by now: they become tasks."""
    withdrawals: dict[int, tuple[Window, asyncio.Future[Any]]] = field(default_factory=dict)
    """By call (its id()): the maintenance window covering it, and its withdrawal in flight."""
    sent: list[tuple[tuple[DialIntent, bool], list[asyncio.Future[Any]]]] = field(
        default_factory=list
    )
    """The do-not-call re-check and the caps of each other call, in flight."""
    failed: Exception | None = None
    """Sending failed: the calls after `sent` were not checked."""


def _unindexed(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and (exc := future.exception()) is not None:
        log.info("decided alerts left in the pending index for the sweep: %r", exc)


def _mark_args(keys: Keys, work: Work, now: float) -> tuple[list[str], list[Any]]:
    """The transition a newly queued piece of work makes: queued, or deferred for a task."""
    key = work.alert.idempotency_key
    if isinstance(work, DialIntent):
        return transition_args(keys, key, state=State.QUEUED, now=now, allowed_from=State.ACCEPTED)
    # Compliance decided: the outcome is final now; the task id follows when raised.
    fields = {"detail": work.detail, "dueAt": iso(work.due)}
    if work.facts:
        fields["facts"] = orjson.dumps(dict(work.facts)).decode()
    return transition_args(
        keys,
        key,
        state=work.outcome,
        now=now,
        reason=work.reason,
        **{k: v for k, v in fields.items() if v},
    )


def _group_keys(keys: Keys, call: DialIntent) -> list[str]:
    """A critical alert never waits behind a non-critical call: it groups in its own lane."""
    lane = "critical" if call.priority == Priority.CRITICAL else "standard"
    customer = call.alert.customer_id
    return [keys.group(customer, lane), keys.group_counts(customer)]


def _sibling(call: DialIntent) -> dict[str, Any]:
    """What the agent sees of an alert that joined the call."""
    alert = call.alert
    return {
        "idempotencyKey": alert.idempotency_key,
        "sensorId": alert.sensor_id,
        "alertType": alert.alert_type,
        "referenceId": alert.reference_id,
        "timestamp": iso(alert.timestamp),
        "currentValue": alert.current_value,
        "threshold": alert.threshold,
        "unit": alert.unit,
        "priority": call.priority.label,
    }


def _queue_id(work: Work) -> str:
    return ("task:" if isinstance(work, TaskIntent) else "dial:") + work.alert.idempotency_key


def _with(done: DialFinished, **changes: Any) -> DialFinished:  # noqa: ANN401
    return DialFinished(
        **{"intent_id": done.intent_id, "priority": done.priority, "slot": done.slot, **changes}
    )
