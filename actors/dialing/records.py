"""The bottom layer: the dial work's records and persisted queue in Redis.

Marks queued work (persisted, recorded, grouped per customer), moves records along, notes
facts, forgets finished work, and takes decided alerts out of the pending index.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from typing import Any

import orjson
import redis

from tripline.actors._loop import ride_out
from tripline.adapters.redis_io import AutoPipeline, async_redis
from tripline.adapters.store import (
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
from tripline.conf.schema import DialerConfig
from tripline.messages import DialIntent, Outcome, Priority, Reason, State, TaskIntent, Withdrawn
from tripline.pipeline.dial_queue import Work
from tripline.service.stats import Stats

log = logging.getLogger("tripline.dialer")


class Records:
    """Redis for the dialer's loop: the records of dial work and its persisted queue."""

    def __init__(
        self,
        *,
        conf: DialerConfig,
        redis_url: str,
        keys: Keys,
        queue_key: str,
        pending_key: str,
        record_ttl: int,
        stats: Stats,
        clock: Callable[[], float],
        tell: Callable[[object], None],
    ) -> None:
        """Keep collaborators; connect() must run on the loop."""
        self.keys, self.queue_key, self._pending_key = keys, queue_key, pending_key
        self._conf, self._redis_url, self._ttl = conf, redis_url, record_ttl
        self._stats, self._clock, self._tell = stats, clock, tell
        self._marks: dict[str, asyncio.Task[Any]] = {}

    async def connect(self) -> None:
        """Connect to Redis (on the loop)."""
        self.redis = async_redis(self._redis_url)
        # Every step shares round trips with the others of its loop iteration (AutoPipeline),
        # which also reloads a script Redis lost in a restart.
        self.auto = AutoPipeline(self.redis)
        self.sha = {
            name: self.auto.script(source)
            for name, source in (
                ("transition", TRANSITION_LUA),
                ("group", GROUP_LUA),
                ("annotate", ANNOTATE_LUA),
                ("cap", CAP_LUA),
                ("cancel", CANCEL_LUA),
            )
        }

    async def close(self) -> None:
        """Close Redis."""
        await self.auto.aclose()
        await self.redis.aclose(close_connection_pool=True)

    async def restore(self) -> list[Work]:
        """The work persisted before a restart (an unreadable entry is left for a person)."""
        stored = await self.redis.hgetall(self.queue_key)
        restored: list[Work] = []
        for entry, blob in stored.items():
            try:
                restored.append(work_from_json(blob if isinstance(blob, bytes) else blob.encode()))
            except Exception:  # one unreadable entry must not keep every call from starting
                log.exception(
                    "dialer: queued entry %r is unreadable; left in %s for a person",
                    entry,
                    self.queue_key,
                )
        return restored

    async def stored_task(self, key: str) -> TaskIntent | None:
        """A queued task's body (tasks wait by reference); None when it was done already."""
        blob = await ride_out(lambda: self.auto.execute("HGET", self.queue_key, f"task:{key}"))
        if blob is None:
            return None
        work = work_from_json(blob if isinstance(blob, bytes) else str(blob).encode())
        assert isinstance(work, TaskIntent)  # noqa: S101 - stored under task:
        return work

    # --- queued work ---------------------------------------------------------------------

    async def mark_queued(self, works: list[Work]) -> None:
        """Persist queued work and record it, one pipeline per batch.

        A round waits for this (after_marks), so a record never shows 'dialing' before
        'queued'.
        """
        task = asyncio.current_task()
        assert task is not None  # noqa: S101 - always inside a task
        for work in works:
            self._marks[work.alert.idempotency_key] = task
        now = self._clock()
        commands = [_mark_args(self.keys, work, now) for work in works]
        blobs: dict[Any, Any] = {queue_id(work): work_to_json(work) for work in works}
        window_ms = int(self._conf.group_window_seconds * 1000)
        calls = [w for w in works if isinstance(w, DialIntent)] if window_ms else []

        async def run() -> list[Any]:
            # Futures, not coroutines: gather would make a task of each of these hundreds.
            steps = [self.auto.send("HSET", self.queue_key, *itertools.chain(*blobs.items()))]
            steps += [self.auto.send_script(self.sha["transition"], k, a) for k, a in commands]
            steps += [
                self.auto.send_script(
                    self.sha["group"],
                    group_keys(self.keys, call),
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
        self.unindex_later(decided)
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
            pipe.rpush(self.keys.siblings(ref), orjson.dumps(_sibling(call)))
            pipe.expire(self.keys.siblings(ref), self._ttl)
        await ride_out(pipe.execute)
        for call, primary, _ in joined:
            if await self.record(
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

    async def after_marks(self, keys: list[str]) -> None:
        """Wait until the batches that record this work as queued have run."""
        marks = {self._marks.pop(key, None) for key in keys}
        current = asyncio.current_task()
        waiting = [m for m in marks if m is not None and m is not current and not m.done()]
        if waiting:
            await asyncio.wait(waiting)

    async def forget(self, work: Work) -> None:
        """Drop work from the persisted queue (done, or replaced by a task)."""
        try:
            await ride_out(lambda: self.auto.execute("HDEL", self.queue_key, queue_id(work)))
        except (redis.ConnectionError, redis.TimeoutError):
            # Left behind, it is restored after a restart and refused by its record then.
            log.warning("queue entry of %s not removed", work.alert.idempotency_key)

    # --- records ---------------------------------------------------------------------------

    async def record(
        self,
        key: str,
        *,
        state: str,
        allowed_from: str = "",
        reason: Reason = Reason.NONE,
        **fields: str,
    ) -> bool:
        """Move a record along (TRANSITION_LUA); True when it moved."""
        keys, args = transition_args(
            self.keys,
            key,
            state=state,
            now=self._clock(),
            reason=reason,
            allowed_from=allowed_from,
            **{k: v for k, v in fields.items() if v},
        )
        # An outcome that happened must be recorded: wait out a Redis outage for it.
        applied = await ride_out(lambda: self.auto.evalsha(self.sha["transition"], keys, args))
        if applied == 1 and state in TERMINAL:
            self.unindex_later([key])
        return bool(applied == 1)

    async def note(self, key: str, event: str, **fields: str) -> None:
        """Add facts to a record without moving it (ANNOTATE_LUA), with a history entry."""
        keys, args = annotate_args(self.keys, key, now=self._clock(), event=event, **fields)
        await ride_out(lambda: self.auto.evalsha(self.sha["annotate"], keys, args))

    def unindex_later(self, keys: list[str]) -> None:
        """Take decided alerts out of the pending index, once their outcome is recorded.

        Left there, the resume sweep would read each record once more only to remove it, in
        pages that hold up critical alerts. Not waited for: it rides with the auto-pipeline's
        next batch (a round trip of its own per call would hold the dialer's slowest stage).
        If it fails, the sweep still removes them.
        """
        if keys:
            self.auto.send("ZREM", self._pending_key, *keys).add_done_callback(_unindexed)


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


def group_keys(keys: Keys, call: DialIntent) -> list[str]:
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


def queue_id(work: Work) -> str:
    """The field of `work` in the persisted queue."""
    return ("task:" if isinstance(work, TaskIntent) else "dial:") + work.alert.idempotency_key
