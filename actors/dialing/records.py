"""The bottom layer: the dial work's records and persisted queue in Redis.

Marks queued work (persisted, recorded, grouped per customer), moves records along, notes
facts, forgets finished work, and takes decided alerts out of the pending index.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable
from typing import Any

import orjson
import redis

from tripline.actors._loop import ride_out
from tripline.adapters.redis_clients import aclose, async_redis
from tripline.adapters.redis_io import AutoPipeline, replies, settled
from tripline.adapters.store import (
    ANNOTATE_LUA,
    CANCEL_LUA,
    CAP_LUA,
    CLAIM_TASK_LUA,
    FROM_PENDING,
    GROUP_LUA,
    TERMINAL,
    TRANSITION_LUA,
    Keys,
    annotate_args,
    iso,
    keep_commands,
    text,
    transition_args,
    work_from_json,
    work_to_json,
)
from tripline.conf.schema import DialerConfig, RedisConfig
from tripline.messages import (
    Alert,
    DialIntent,
    Outcome,
    Priority,
    Reason,
    State,
    TaskIntent,
    Withdrawn,
)
from tripline.pipeline.dial_queue import Work
from tripline.pipeline.lifetime import keep_seconds, must_keep
from tripline.service.stats import Stats

log = logging.getLogger("tripline.dialer")

_UNINDEX_LINGER = 0.05
"""Decided alerts wait at most this long (s) to leave the pending index with another step."""


class Records:
    """Redis for the dialer's loop: the records of dial work and its persisted queue."""

    def __init__(
        self,
        *,
        conf: DialerConfig,
        redis_conf: RedisConfig,
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
        self._conf, self._redis_conf, self._ttl = conf, redis_conf, record_ttl
        self._stats, self._clock, self._tell = stats, clock, tell
        self._marks: dict[str, asyncio.Task[Any]] = {}
        self._unindex: list[str] = []  # decided, not yet taken out of the pending index
        self._unindex_timer: asyncio.TimerHandle | None = None

    async def connect(self) -> None:
        """Connect to Redis (on the loop)."""
        self.redis = async_redis(self._redis_conf)
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
                ("claim", CLAIM_TASK_LUA),
            )
        }

    async def close(self) -> None:
        """Close Redis (the decided alerts still owed to the pending index leave it first)."""
        if self._unindex_timer is not None:
            self._unindex_timer.cancel()
            self._unindex_timer = None
        if self._unindex:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._unindex_now(), 1.0)
        await self.auto.aclose()
        await aclose(self.redis)

    async def restore(self) -> list[Work]:
        """The work persisted before a restart (an unreadable entry is left for a person)."""
        return [
            work for _, work in _readable(await self.redis.hgetall(self.queue_key), self.queue_key)
        ]

    async def adopt(self, queue_key: str) -> list[Work]:
        """Take over another instance's queued work (its lease lapsed): ours, then not theirs.

        Copied into our queue before it leaves theirs: a crash in between leaves it in both,
        and each copy's record refuses the second (a record leaves 'queued' once). An entry
        that cannot be read stays where it was, for a person.
        """
        entries = _readable(await self.redis.hgetall(queue_key), queue_key)
        if not entries:
            return []
        blobs: dict[Any, Any] = {queue_id(work): work_to_json(work) for _, work in entries}
        await self.redis.hset(self.queue_key, mapping=blobs)
        await self.redis.hdel(queue_key, *(field for field, _ in entries))
        return [work for _, work in entries]

    async def claim_task(
        self, key: str, outcome: str, *, stored: bool
    ) -> tuple[TaskIntent | None, int]:
        """Claim an alert's one task (CLAIM_TASK_LUA) and, when `stored`, read its body.

        One round trip (with the pending index's owed removals): the body comes from the
        persisted queue (tasks wait by reference; None when done already), the claim from the
        record's slot. The claim answers 1 (claimed now), 0 (claimed before) or -1 (the
        record's outcome is not `outcome`). A claim whose body turned out gone or different
        is the caller's to give back (release_task).
        """
        record = self.keys.record(key)

        async def step() -> list[Any]:
            self._unindex_soon()
            steps = [
                self.auto.send_script(self.sha["claim"], [record], [outcome, iso(self._clock())])
            ]
            if stored:
                steps.append(self.auto.send("HGET", self.queue_key, f"task:{key}"))
            return await replies(steps)

        answers = await ride_out(step)
        claimed, blob = int(answers[0]), answers[1] if stored else None
        if blob is None:
            return None, claimed
        work = work_from_json(blob if isinstance(blob, bytes) else str(blob).encode())
        assert isinstance(work, TaskIntent)  # noqa: S101 - stored under task:
        return work, claimed

    async def release_task(self, key: str) -> None:
        """Give back a task's claim: it was not raised (the backend did not take it)."""
        await ride_out(lambda: self.auto.execute("HDEL", self.keys.record(key), "taskClaimed"))

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
        # A task's record outlives its due time by the record TTL (a Friday-evening deferral is
        # due Monday 09:00): its keys are kept that long in the same round trip.
        keeps = [
            command
            for work in works
            if isinstance(work, TaskIntent)
            for command in self.keep_commands(work.alert, until=work.due, now=now)
        ]
        blobs: dict[Any, Any] = {queue_id(work): work_to_json(work) for work in works}
        window_ms = int(self._conf.group_window_seconds * 1000)
        calls = [w for w in works if isinstance(w, DialIntent)] if window_ms else []

        async def run() -> list[Any]:
            # Futures, not coroutines: gather would make a task of each of these hundreds.
            self._unindex_soon()
            steps = [self.auto.send("HSET", self.queue_key, *itertools.chain(*blobs.items()))]
            steps += [self.auto.send_script(self.sha["transition"], k, a) for k, a in commands]
            kept = [self.auto.send(*command) for command in keeps]
            steps += [
                self.auto.send_script(
                    self.sha["group"],
                    group_keys(self.keys, call),
                    [call.intent_id, call.alert.reference_id, window_ms, self._ttl],
                )
                for call in calls
            ]
            results = await settled([*steps, *kept])
            for result in results:
                if isinstance(result, BaseException):
                    raise result  # an outage fails them all; ride_out runs the batch again
            return results[: len(steps)]

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
            # At least the record TTL, never shortened: the call's record may have been kept
            # longer already (a scheduled callback, a ladder), and its agent reads these with it.
            pipe.expire(self.keys.siblings(ref), self._ttl, nx=True)
            pipe.expire(self.keys.siblings(ref), self._ttl, gt=True)
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

    def keep_commands(self, alert: Alert, *, until: float, now: float) -> list[tuple[Any, ...]]:
        """The commands that keep an alert's keys `record_ttl` past `until` (never shorter).

        None when acceptance gave them that long already (an obligation due soon after it).
        """
        if not must_keep(accepted_at=alert.accepted_at, until=until, ttl=self._ttl):
            return []
        return keep_commands(self.keys, alert, keep_seconds(now=now, until=until, ttl=self._ttl))

    def keep(self, alert: Alert, *, until: float) -> None:
        """Keep an alert's keys `record_ttl` past `until`: its ladder's next step, its end.

        Not waited for: the commands ride with the next step the records send. One that fails
        (Redis away) leaves the TTL the previous step set, at least the record TTL from then;
        the ladder's next step sets it again.
        """
        for command in self.keep_commands(alert, until=until, now=self._clock()):
            self.auto.send(*command).add_done_callback(_kept)

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

    def _forget_with(self, work: Work | None) -> asyncio.Future[Any] | None:
        """Send the removal of `work`'s queue entry with the step being sent (None: nothing)."""
        if work is None:
            return None
        return self.auto.send("HDEL", self.queue_key, queue_id(work))

    # --- records ---------------------------------------------------------------------------

    async def record(
        self,
        key: str,
        *,
        state: str,
        allowed_from: str = "",
        reason: Reason = Reason.NONE,
        forget: Work | None = None,
        **fields: str,
    ) -> bool:
        """Move a record along (TRANSITION_LUA); True when it moved.

        `forget`: work whose queue entry goes in the same round trip, whatever the answer —
        only when nothing needs that entry once this step is sent (a call past 'dialing':
        restored, its record refuses it).
        """
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
        applied = await ride_out(lambda: self._script_forgetting("transition", keys, args, forget))
        if applied == 1 and state in TERMINAL:
            self.unindex_later([key])
        return bool(applied == 1)

    async def note(
        self, key: str, event: str, *, forget: Work | None = None, **fields: str
    ) -> None:
        """Add facts to a record without moving it (ANNOTATE_LUA), with a history entry.

        `forget`: work whose queue entry goes in the same round trip, after the note.
        """
        keys, args = annotate_args(self.keys, key, now=self._clock(), event=event, **fields)
        await ride_out(lambda: self._script_forgetting("annotate", keys, args, forget))

    async def _script_forgetting(
        self, script: str, keys: list[str], args: list[Any], forget: Work | None
    ) -> Any:  # noqa: ANN401
        """Run one of the record's scripts, `forget`'s queue entry going in the same round trip."""
        self._unindex_soon()
        reply = self.auto.send_script(self.sha[script], keys, args)
        removed = self._forget_with(forget)
        if removed is not None:
            removed.add_done_callback(_forgotten)
        return await reply

    def unindex_later(self, keys: list[str]) -> None:
        """Take decided alerts out of the pending index, once their outcome is recorded.

        Left there, the resume sweep would read each record once more only to remove it, in
        pages that hold up critical alerts. Not waited for, and not sent on its own: the keys
        ride with the next step the records send (the next alert's, or this alert's own next
        step), or after _UNINDEX_LINGER, as one ZREM — a round trip of their own would be one
        more on the alert's way (a task's claim waited behind it). If it fails, or the process
        dies first, the sweep still removes them.
        """
        if keys:
            self._unindex.extend(keys)
            if self._unindex_timer is None:
                loop = asyncio.get_running_loop()
                self._unindex_timer = loop.call_later(_UNINDEX_LINGER, self._unindex_soon)

    def _unindex_soon(self) -> None:
        """Send the owed removals from the pending index, with whatever is being sent now."""
        if self._unindex_timer is not None:
            self._unindex_timer.cancel()
            self._unindex_timer = None
        if self._unindex:
            self._unindex_now().add_done_callback(_unindexed)

    def _unindex_now(self) -> asyncio.Future[Any]:
        keys, self._unindex = self._unindex, []
        return self.auto.send("ZREM", self._pending_key, *keys)


def _readable(stored: dict[Any, Any], where: str) -> list[tuple[Any, Work]]:
    """The persisted queue's entries that can be read, with their fields."""
    works: list[tuple[Any, Work]] = []
    for entry, blob in stored.items():
        try:
            works.append(
                (entry, work_from_json(blob if isinstance(blob, bytes) else blob.encode()))
            )
        except Exception:  # one unreadable entry must not keep every call from starting
            log.exception(
                "dialer: queued entry %r is unreadable; left in %s for a person", entry, where
            )
    return works


def _unindexed(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and (exc := future.exception()) is not None:
        log.info("decided alerts left in the pending index for the sweep: %r", exc)


def _kept(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and (exc := future.exception()) is not None:
        log.info("a record's lifetime was not extended: %r", exc)


def _forgotten(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and (exc := future.exception()) is not None:
        # Left behind, it is restored after a restart and refused by its record then.
        log.warning("a queue entry was not removed: %r", exc)


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
