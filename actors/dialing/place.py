"""Placing calls: one request to the backend per call, its answer recorded, never resent blind.

A call is sent again only when it provably never left (connect failed); after an ambiguous
failure it is recorded as uncertain and a person gets a task.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from tripline.actors.dialing.follow import Follower
from tripline.actors.dialing.gate import LastChecks
from tripline.actors.dialing.records import Records
from tripline.adapters.backends import Backends, Result
from tripline.adapters.store import iso
from tripline.conf.schema import DialerConfig
from tripline.messages import DialFinished, DialIntent, Outcome, Reason, State, TaskIntent
from tripline.pipeline.dial import Answer, backoff
from tripline.pipeline.reach import CallResult, Evidence, ResultReason
from tripline.service.stats import Stats

log = logging.getLogger("tripline.dialer")


class Placer:
    """Sends each call that passed its last checks, and records what the backend answered."""

    def __init__(
        self,
        *,
        conf: DialerConfig,
        backends: Backends,
        records: Records,
        checks: LastChecks,
        routing: dict[str, int],
        stats: Stats,
        clock: Callable[[], float],
        tell: Callable[[object], None],
        follower: Follower | None = None,
    ) -> None:
        """Keep collaborators."""
        self._conf, self._backends, self._records, self._checks = conf, backends, records, checks
        self._follower = follower
        self._routing, self._stats, self._clock, self._tell = routing, stats, clock, tell

    async def place(self, intent: DialIntent, slot: bool) -> None:
        """Send one call and record what the backend answered; never resend after ambiguity."""
        done = DialFinished(intent_id=intent.intent_id, priority=intent.priority, slot=slot)
        forgotten = False  # its queue entry went with the record of the call
        try:
            backend = self._backends.by_priority[intent.priority]
            if intent.scheduled_for and not getattr(backend, "schedules", False):
                # Only Genesys callbacks can wait for the window: here it is a task, as before.
                await self._checks.release_caps(intent)
                self._tell(_window_task(intent))
                done = finished_with(done, backend_ok=None)
                return
            follower = self._follower
            if follower is not None and follower.follows(intent):
                # Indexed before the call leaves: a crash after it still finds the call.
                grace = self._conf.request_timeout_seconds * (self._conf.max_retries + 2)
                await follower.watch(intent, self._clock() + grace)
            started = time.perf_counter()
            try:
                result = await send(
                    lambda: backend.dial(intent, self._routing.get(intent.priority.label, 5)),
                    self._conf,
                )
            except Exception as exc:  # the request may have left: never requeue
                result = Result(Answer.UNCERTAIN, detail=f"error while dialing: {exc!r}"[:300])
            self._stats.stage_seconds.labels("dial").observe(time.perf_counter() - started)
            done = await self._after_dial(intent, result, done)
            forgotten = intent.attempt <= 1 and result.answer == Answer.DONE
        except Exception as exc:
            log.exception("dialer: %s failed", intent.intent_id)
            if intent.attempt > 1 and self._follower is not None:
                unknown = Evidence(CallResult.UNKNOWN, Reason.DIAL_UNCERTAIN.value)
                await self._follower.not_placed(intent, unknown, f"internal error: {exc!r}")
                return
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
            if done.requeue is None and not forgotten:
                await self._records.forget(intent)
            self._tell(done)

    async def _after_reattempt(
        self, intent: DialIntent, result: Result, done: DialFinished
    ) -> DialFinished:
        """A re-attempt of a called alert: its answer moves the ladder, not the outcome."""
        follower = self._follower
        assert follower is not None  # noqa: S101 - only the follower queues re-attempts
        if result.answer == Answer.DONE:
            await follower.placed(intent, result.ref)
            return finished_with(done, backend_ok=True)
        if result.answer != Answer.UNCERTAIN:
            await self._checks.release_caps(intent)
        if result.answer in (Answer.RATE_LIMITED, Answer.UNSENT):
            await follower.requeued(intent)
            wait = result.pause()
            reached = result.answer != Answer.UNSENT
            return finished_with(done, requeue=intent, retry_after=wait, backend_ok=reached)
        evidence = (
            Evidence(CallResult.UNKNOWN, Reason.DIAL_UNCERTAIN.value)
            if result.answer == Answer.UNCERTAIN
            else Evidence(CallResult.NOT_REACHED, ResultReason.FAILED)
        )
        await follower.not_placed(intent, evidence, result.detail)
        return finished_with(done, backend_ok=True)

    async def _after_dial(
        self, intent: DialIntent, result: Result, done: DialFinished
    ) -> DialFinished:
        if intent.attempt > 1:
            return await self._after_reattempt(intent, result, done)
        key = intent.intent_id
        reached = result.answer != Answer.UNSENT
        if result.answer == Answer.DONE:
            facts = orjson.dumps(dict(intent.facts)).decode() if intent.facts else ""
            ladder: dict[str, str] = {}
            if (
                self._follower is not None
                and self._follower.follows(intent)
                and result.ref not in ("", "unknown")
            ):
                ladder = self._follower.first_fields(intent, result.ref, self._clock())
            if await self._records.record(
                key,
                state=Outcome.CALLED,
                allowed_from=State.DIALING,
                reason=Reason.NONE,
                callId=result.ref,
                detail=result.detail,
                facts=facts,
                scheduledFor=iso(intent.scheduled_for) if intent.scheduled_for else "",
                # For the ledger (hashed and masked there; never shown by GET /v1/alerts).
                ledgerPhone=intent.customer.phone,
                backend=self._backends.name(intent.priority),
                # Past 'dialing' its queue entry serves nothing (restored, its record refuses
                # it): it goes in the same round trip, whatever the record answers.
                forget=intent,
                **ladder,
            ):
                self._stats.decided(intent.alert, Outcome.CALLED, callId=result.ref or "")
                if ladder and self._follower is not None:
                    await self._follower.placed_first(intent)
            return finished_with(done, backend_ok=True)
        if result.answer != Answer.UNCERTAIN:  # provably no call: it must not count
            await self._checks.release_caps(intent)
        if result.answer in (Answer.RATE_LIMITED, Answer.UNSENT):
            # Not taken by the backend: back to the queue (a down backend opens the breaker).
            await self._records.record(
                key, state=State.QUEUED, allowed_from=State.DIALING, detail=result.detail
            )
            wait = result.pause()
            return finished_with(done, requeue=intent, retry_after=wait, backend_ok=reached)
        reason = Reason.DIAL_UNCERTAIN if result.answer == Answer.UNCERTAIN else Reason.DIAL_FAILED
        self._tell(
            TaskIntent(alert=intent.alert, reason=reason, due=self._clock(), detail=result.detail)
        )
        return finished_with(done, backend_ok=True)


async def send(attempt: Callable[[], Awaitable[Result]], conf: DialerConfig) -> Result:
    """Call the backend, retrying only what provably never reached it."""
    result = await attempt()
    for n in range(conf.max_retries):
        if result.answer != Answer.UNSENT:
            break
        await asyncio.sleep(
            backoff(
                n,
                base=conf.backoff_base_seconds,
                cap=conf.backoff_max_seconds,
                jitter=random.random(),
            )
        )
        result = await attempt()
    return result


def _window_task(intent: DialIntent) -> TaskIntent:
    facts = dict(intent.facts)
    return TaskIntent(
        alert=intent.alert,
        reason=Reason.OUTSIDE_CALLING_WINDOW,
        due=intent.scheduled_for,
        detail=f"outside the calling window ({facts.get('localTime', '')}); this backend "
        "cannot schedule a callback",
        facts=intent.facts,
    )


def finished_with(done: DialFinished, **changes: Any) -> DialFinished:  # noqa: ANN401
    """`done` with `changes` (DialFinished is frozen)."""
    return DialFinished(
        **{"intent_id": done.intent_id, "priority": done.priority, "slot": done.slot, **changes}
    )
