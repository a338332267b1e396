"""The one dialer: a priority queue under a rate budget, placing calls and raising tasks."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import pykka
import redis.asyncio as aioredis

from actors import Supervised
from actors._loop import LoopThread
from conf.schema import DialerConfig
from messages import (
    DialFinished,
    DialIntent,
    Drain,
    Outcome,
    Ping,
    Priority,
    PumpTick,
    Reason,
    State,
    StatusQuery,
    TaskIntent,
)
from pipeline.caps import Cap, cap_args
from pipeline.comply import Blocked, ComplyRules, check_window
from pipeline.dial import Answer, Bucket, backoff, retry_after, take
from tripline.backends import Backend, Result
from tripline.stats import Stats
from tripline.store import (
    ANNOTATE_LUA,
    CAP_LUA,
    FROM_PENDING,
    TRANSITION_LUA,
    Keys,
    annotate_args,
    iso,
    transition_args,
)

log = logging.getLogger("tripline.dialer")

Work = DialIntent | TaskIntent


@dataclass(frozen=True, slots=True)
class CapRules:
    """The [comply] caps: per phone number and per customer, each over several windows."""

    number: tuple[Cap, ...] = ()
    customer: tuple[Cap, ...] = ()


class Dialer(Supervised, pykka.ThreadingActor):
    """Owns the queue and the budget; HTTP runs on its own asyncio loop, results come back as tells.

    The loop never touches actor state: it records outcomes in Redis and tells DialFinished.
    """

    def __init__(
        self,
        *,
        conf: DialerConfig,
        backend_factory: Callable[[], Backend],
        redis_url: str,
        keys: Keys,
        routing: dict[str, int],
        rules: ComplyRules,
        stats: Stats,
        caps: CapRules | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Keep collaborators; the backend is built on the loop that will use it."""
        super().__init__()
        self._conf, self._backend_factory, self._redis_url = conf, backend_factory, redis_url
        self._keys, self._routing, self._rules = keys, routing, rules
        self._caps = caps or CapRules()
        self._stats, self._clock = stats, clock
        self._queue: list[tuple[int, int, Work]] = []
        self._seq = itertools.count()
        self._in_flight = 0
        self._bucket = Bucket(float(conf.burst), clock())
        self._paused_until = 0.0
        self._tick_at: float | None = None
        self._loop: LoopThread | None = None

    # --- lifecycle -------------------------------------------------------------------------

    def on_start(self) -> None:
        """Start the loop, its Redis client and the backend."""
        self._loop = LoopThread(f"dialer-loop-{id(self):x}")
        self._loop.call(self._open())

    async def _open(self) -> None:
        self._redis = aioredis.Redis.from_url(self._redis_url)
        self._marks: dict[str, asyncio.Task[Any]] = {}  # loop-only: see _mark_queued
        self._transition = self._redis.register_script(TRANSITION_LUA)
        self._annotate = self._redis.register_script(ANNOTATE_LUA)
        self._cap = self._redis.register_script(CAP_LUA)
        self._backend = self._backend_factory()

    async def _close(self) -> None:
        await self._backend.close()
        await self._redis.aclose()

    def on_stop(self) -> None:
        """Close connections and stop the loop (the supervisor drained us first)."""
        if self._queue:
            log.warning(
                "dialer stopping with %d queued; their records stay queued", len(self._queue)
            )
        if self._loop is not None:
            try:
                self._loop.call(self._close())
            except Exception:
                log.warning("dialer: close failed", exc_info=True)
            self._loop.stop()

    # --- messages --------------------------------------------------------------------------

    def on_receive(self, message: Any) -> Any:  # noqa: ANN401
        """Dispatch one message."""
        match message:
            case DialIntent() | TaskIntent():
                self._enqueue(message)
                self._submit(self._mark_queued(message))
            case DialFinished():
                self._in_flight -= 1
                if message.retry_after is not None:
                    self._paused_until = max(
                        self._paused_until, self._clock() + message.retry_after
                    )
                if message.requeue is not None:
                    self._enqueue(message.requeue)
            case PumpTick():
                self._tick_at = None
            case Drain():
                return len(self._queue) + self._in_flight
            case StatusQuery():
                return self._status()
            case Ping():
                return True
            case _:
                return super().on_receive(message)
        self._pump()
        return None

    def _enqueue(self, work: Work) -> None:
        priority = work.priority if isinstance(work, DialIntent) else work.alert.priority
        heapq.heappush(self._queue, (priority, next(self._seq), work))
        self._publish_depth()

    def _pump(self) -> None:
        """Start as much queued work as the budget, the pause and the concurrency caps allow."""
        now = self._clock()
        while self._queue:
            if now < self._paused_until:
                self._wake_at(self._paused_until)
                return
            priority = self._queue[0][0]
            cap = self._conf.max_concurrency + (
                self._conf.critical_concurrency if priority == Priority.CRITICAL else 0
            )
            if self._in_flight >= cap:
                return  # a DialFinished will pump again
            self._bucket, wait = take(
                self._bucket,
                now=now,
                rate_per_second=self._conf.rate_per_minute / 60,
                burst=self._conf.burst,
            )
            if wait > 0:
                self._wake_at(now + wait)
                return
            _, _, work = heapq.heappop(self._queue)
            self._in_flight += 1
            self._submit(self._run(work))
        self._publish_depth()

    def _wake_at(self, at: float) -> None:
        if self._tick_at is not None and self._tick_at <= at:
            return
        self._tick_at = at
        ref = self.actor_ref
        assert self._loop is not None  # noqa: S101 - on_start ran
        self._loop.loop.call_soon_threadsafe(
            self._loop.loop.call_later, max(0.0, at - self._clock()), lambda: ref.tell(PumpTick())
        )

    def _submit(self, coro: Any) -> None:  # noqa: ANN401
        assert self._loop is not None  # noqa: S101 - on_start ran
        self._loop.submit(coro)

    def _publish_depth(self) -> None:
        counts = dict.fromkeys(Priority, 0)
        for priority, _, _ in self._queue:
            counts[Priority(priority)] += 1
        for priority, n in counts.items():
            self._stats.queue_depth.labels(priority.label).set(n)

    def _status(self) -> dict[str, Any]:
        depth = {p.label: 0 for p in Priority}
        for priority, _, _ in self._queue:
            depth[Priority(priority).label] += 1
        now = self._clock()
        return {
            "queueDepth": depth,
            "inFlight": self._in_flight,
            "pausedUntil": iso(self._paused_until) if self._paused_until > now else None,
            "rateBudget": {
                "perMinute": self._conf.rate_per_minute,
                "tokens": round(self._bucket.tokens, 2),
            },
        }

    # --- on the loop -----------------------------------------------------------------------

    async def _mark_queued(self, work: Work) -> None:
        # _run waits for this write, so a record never shows 'dialing' before 'queued'.
        task = asyncio.current_task()
        assert task is not None  # noqa: S101 - always inside a task
        self._marks[work.alert.idempotency_key] = task
        if isinstance(work, DialIntent):
            await self._record(work.intent_id, state=State.QUEUED, allowed_from=State.ACCEPTED)
        else:
            # Compliance decided: the outcome is final now; the task id follows when raised.
            facts = dict(work.facts)
            applied = await self._record(
                work.alert.idempotency_key,
                state=Outcome.DEFERRED,
                reason=work.reason,
                detail=work.detail,
                dueAt=iso(work.due),
                facts=orjson.dumps(facts).decode() if facts else "",
            )
            if applied:
                self._stats.count(Outcome.DEFERRED, work.reason)

    async def _run(self, work: Work) -> None:
        outcome = DialFinished(intent_id=work.alert.idempotency_key, priority=work.alert.priority)
        mark = self._marks.pop(work.alert.idempotency_key, None)
        if mark is not None and mark is not asyncio.current_task():
            await asyncio.wait([mark])
        try:
            if isinstance(work, DialIntent):
                outcome = await self._dial(work)
            else:
                outcome = await self._raise_task(work)
        except Exception as exc:
            log.exception("dialer: %s failed", work.alert.idempotency_key)
            if isinstance(work, DialIntent):
                # We cannot know whether the request left: never resend, hand it to a person.
                self.actor_ref.tell(
                    TaskIntent(
                        alert=work.alert,
                        reason=Reason.DIAL_UNCERTAIN,
                        due=self._clock(),
                        detail=f"internal error while dialing: {exc!r}"[:200],
                    )
                )
        finally:
            self.actor_ref.tell(outcome)

    async def _dial(self, intent: DialIntent) -> DialFinished:
        key = intent.intent_id
        done = DialFinished(intent_id=key, priority=intent.priority)
        task = await self._recheck(intent)
        if task is not None:
            self.actor_ref.tell(task)
            return done
        capped = await self._take_caps(intent)
        if capped is not None:
            if await self._record(
                key, state=Outcome.SUPPRESSED, reason=capped, allowed_from=FROM_PENDING
            ):
                self._stats.count(Outcome.SUPPRESSED, capped)
            return done
        # The record is the arbiter: only one path may move it to dialing, ever.
        if not await self._record(key, state=State.DIALING, allowed_from=FROM_PENDING):
            log.info("dial %s skipped: its record is already past queued", key)
            await self._release_caps(intent)
            return done
        result = await self._send(
            lambda: self._backend.dial(intent, self._routing.get(intent.priority.label, 5))
        )
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
                self._stats.count(Outcome.CALLED)
            return done
        if result.answer != Answer.UNCERTAIN:  # provably no call: it must not count
            await self._release_caps(intent)
        if result.answer == Answer.RATE_LIMITED:
            await self._record(
                key, state=State.QUEUED, allowed_from=State.DIALING, detail=result.detail
            )
            return DialFinished(
                intent_id=key,
                priority=intent.priority,
                requeue=intent,
                retry_after=retry_after(result.retry_after, default=1.0),
            )
        reason = Reason.DIAL_UNCERTAIN if result.answer == Answer.UNCERTAIN else Reason.DIAL_FAILED
        self.actor_ref.tell(
            TaskIntent(alert=intent.alert, reason=reason, due=self._clock(), detail=result.detail)
        )
        return done

    async def _recheck(self, intent: DialIntent) -> TaskIntent | None:
        """Compliance again at the moment of dialing: work may have waited in the queue."""
        blocked = check_window(
            intent.customer,
            now=self._clock(),
            rules=self._rules,
            alert_type=intent.alert.alert_type,
        )
        if blocked is None and await self._redis.sismember(self._keys.dnc(), intent.customer.phone):
            blocked = Blocked(
                Reason.DO_NOT_CALL,
                self._clock(),
                "the number joined the internal do-not-call list while queued",
                {"rule": "internal_dnc_list"},
            )
        if blocked is None:
            return None
        return TaskIntent(
            alert=intent.alert,
            reason=blocked.reason,
            due=blocked.due,
            detail=blocked.detail,
            facts=tuple(blocked.facts.items()),
        )

    async def _take_caps(self, intent: DialIntent) -> Reason | None:
        """Count the call against the number's and the customer's caps, atomically in Redis."""
        now, member = self._clock(), intent.intent_id
        if self._caps.number:
            ok, _ = await self._cap(
                keys=[self._keys.number_calls(intent.customer.phone)],
                args=cap_args(self._caps.number, now=now, member=member),
            )
            if not ok:
                return Reason.NUMBER_CAP
        if self._caps.customer:
            ok, _ = await self._cap(
                keys=[self._keys.customer_calls(intent.customer.customer_id)],
                args=cap_args(self._caps.customer, now=now, member=member),
            )
            if not ok:
                await self._release_caps(intent, customer=False)
                return Reason.CUSTOMER_CAP
        return None

    async def _release_caps(self, intent: DialIntent, *, customer: bool = True) -> None:
        pipe = self._redis.pipeline(transaction=False)
        pipe.zrem(self._keys.number_calls(intent.customer.phone), intent.intent_id)
        if customer:
            pipe.zrem(self._keys.customer_calls(intent.customer.customer_id), intent.intent_id)
        await pipe.execute()

    async def _raise_task(self, task: TaskIntent) -> DialFinished:
        key = task.alert.idempotency_key
        done = DialFinished(intent_id=key, priority=task.alert.priority)
        # At most one task per alert, even if the same deferral is replayed.
        if not await self._redis.hsetnx(self._keys.record(key), "taskClaimed", iso(self._clock())):
            return done
        result = await self._send(lambda: self._backend.create_task(task))
        if result.answer == Answer.RATE_LIMITED:
            await self._redis.hdel(self._keys.record(key), "taskClaimed")
            return DialFinished(
                intent_id=key,
                priority=task.alert.priority,
                requeue=task,
                retry_after=retry_after(result.retry_after, default=1.0),
            )
        if result.answer == Answer.DONE:
            await self._note(key, "task_raised", taskId=result.ref)
        else:
            log.error("task for %s not raised (%s): %s", key, result.answer, result.detail)
            await self._note(key, "task_failed", taskError=f"{result.answer}: {result.detail}")
        return done

    async def _send(self, attempt: Callable[[], Any]) -> Result:
        """Call the backend, retrying only what provably never reached it."""
        result: Result = await attempt()
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
        return bool(await self._transition(keys=keys, args=args) == 1)

    async def _note(self, key: str, event: str, **fields: Any) -> None:  # noqa: ANN401
        keys, args = annotate_args(self._keys, key, now=self._clock(), event=event, **fields)
        await self._annotate(keys=keys, args=args)
