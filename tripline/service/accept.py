"""The one accept path for both doors: validate, claim the key, record durably, then answer."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import redis

from tripline.adapters.deadletter import DeadLetters
from tripline.adapters.redis_clients import SyncRedis
from tripline.adapters.redis_io import (
    AutoPipeline,
    PipelinedScript,
    batch,
    execute,
    item_error,
    settled,
)
from tripline.adapters.store import ACCEPT_IDENTITY, ACCEPT_LUA, Keys, accept_args, text
from tripline.messages import Alert, Outcome, Priority, Reason, Snapshot, State
from tripline.pipeline.lifetime import accept_ttl
from tripline.pipeline.prioritise import PriorityRules
from tripline.pipeline.validate import Limits, Problem, Rejected, validate
from tripline.service.stats import Stats

log = logging.getLogger("tripline.accept")

_UNCERTAIN_MAX = 100_000
_ACCEPTED = State.ACCEPTED.value


@dataclass(frozen=True, slots=True)
class Checked:
    """A payload that passed validation, prioritised: ready to be recorded."""

    alert: Alert
    doc: dict[str, Any]
    """The decoded payload, stored as the alert's context."""
    payload: bytes = b""
    """As received: what the dead-letter keeps if it cannot be recorded."""
    source: str = "mqtt"
    """The door it came through (mqtt or http)."""
    topic: str = ""

    @property
    def urgent(self) -> bool:
        """A critical alert: the subscriber records it at once, without lingering for more."""
        return self.alert.priority == Priority.CRITICAL


@dataclass(frozen=True, slots=True)
class Accepted:
    """Recorded for the first time: the caller may acknowledge and route it."""

    alert: Alert
    snapshot: Snapshot | None = None
    """A critical alert's sensor snapshot, read in the same round trip: its shard need not
    read it before deciding. None: not read."""


@dataclass(frozen=True, slots=True)
class Duplicate:
    """The key was already recorded for this same alert: acknowledge, do nothing else."""

    idempotency_key: str


@dataclass(frozen=True, slots=True)
class Conflict:
    """The key was already recorded for another alert: refuse (HTTP 409), keep the record."""

    idempotency_key: str
    fields: tuple[str, ...]
    """The fields that differ from the recorded alert's."""

    def as_problems(self) -> list[dict[str, str]]:
        """The conflict as a problem document's problems, one per differing field."""
        return [
            {
                "field": name,
                "reason": Reason.CONFLICT.value,
                "message": f"idempotencyKey {self.idempotency_key!r} was recorded for an alert "
                f"with another {name}",
            }
            for name in self.fields
        ]


@dataclass(frozen=True, slots=True)
class Quarantined(Rejected):
    """Could not be processed (our failure, not a field's): rejected and dead-lettered."""


Verdict = Accepted | Duplicate | Conflict | Rejected


def snapshots(verdicts: Sequence[Verdict]) -> dict[str, Snapshot]:
    """By sensor, the snapshots read with these verdicts' records, for their shards."""
    return {
        v.alert.sensor_id: v.snapshot
        for v in verdicts
        if isinstance(v, Accepted) and v.snapshot is not None
    }


class Acceptor:
    """Runs a batch of payloads through validation and one pipelined Redis round trip."""

    def __init__(
        self,
        *,
        client: SyncRedis,
        keys: Keys,
        limits: Limits,
        rules: PriorityRules,
        record_ttl: int,
        stats: Stats,
        clock: Callable[[], float],
        pending_key: str = "",
        dead_letters: DeadLetters | None = None,
        attempts: int = 3,
    ) -> None:
        """Keep the collaborators; thread-safe (redis-py pools its connections).

        `pending_key` is this instance's index of unfinished alerts (a sorted set): an alert
        enters it before its record exists, and the resume sweep takes it out once decided.
        An alert whose own commands fail `attempts` times in a row (an error about its keys, not
        Redis being away) is quarantined: rejected, kept in `dead_letters`, never tried again.
        """
        self._redis, self._keys, self._limits = client, keys, limits
        self._pending_key = pending_key or keys.pending("default")
        # A little past the record TTL: an obligation due soon after needs no extension.
        self._ttl = accept_ttl(record_ttl)
        self._rules, self._stats, self._clock = rules, stats, clock
        self._accept = PipelinedScript(client, ACCEPT_LUA)
        self._dead, self._attempts = dead_letters, max(1, attempts)
        # Keys whose record attempt failed without an answer, oldest first (a dict as an
        # ordered set): Redis may have written their records before the connection broke.
        # The next attempt that finds one recorded routes it, as nothing else would (the
        # failed attempt routed nothing), and the resume sweep does not take it for in flight.
        self._uncertain: dict[str, None] = {}

    def accept(self, items: Sequence[tuple[bytes, bool]], *, source: str = "mqtt") -> list[Verdict]:
        """Accept a batch of (payload, retained) pairs: check each, then record them together.

        Returns:
            One verdict per item, in order. Raises redis errors: then nothing was acknowledged
            and the caller keeps the batch (the broker keeps it too, unacknowledged).
        """
        now = self._clock()
        return self.record(
            [self.check(body, retained, now=now, source=source) for body, retained in items]
        )

    def check(
        self,
        body: bytes,
        retained: bool,
        *,
        now: float | None = None,
        source: str = "mqtt",
        topic: str = "",
    ) -> Checked | Rejected:
        """Decode and validate one payload (its only decode), and give it its priority.

        Never raises: a payload our own code fails on is that payload's rejection (and goes to
        the dead-letter), not the caller's death.
        """
        try:
            checked = validate(
                body,
                now=self._clock() if now is None else now,
                limits=self._limits,
                retained=retained,
                rules=self._rules,
            )
            if isinstance(checked, Rejected):
                return checked
            return Checked(checked[0], checked[1], body, source, topic)
        except Exception as exc:
            log.exception("checking a %s payload failed", source)
            return self.quarantine(body, exc, source=source, topic=topic, key="", attempts=1)

    def quarantine(
        self,
        body: bytes,
        exc: BaseException,
        *,
        source: str,
        topic: str = "",
        key: str = "",
        attempts: int = 1,
    ) -> Quarantined:
        """Give up on a payload our side failed on: dead-letter it, answer with a rejection."""
        error = f"{type(exc).__name__}: {exc}"
        if self._dead is not None:
            self._dead.add(
                source, error=error, payload=body, key=key, topic=topic, attempts=attempts
            )
        message = f"could not be processed ({type(exc).__name__}); kept in the dead-letter"
        return Quarantined((Problem("", Reason.INVALID_FIELD, message),), key)

    def record(self, checked: Sequence[Checked | Rejected]) -> list[Verdict]:
        """Claim and record checked alerts in one pipelined round trip; one verdict each.

        Raises redis errors: then nothing was recorded that the caller may acknowledge.
        """
        with self._stats.stage("accept").time():
            try:
                return self._record(checked)
            except redis.RedisError:
                self._remember_uncertain(
                    [c.alert.idempotency_key for c in checked if isinstance(c, Checked)]
                )
                raise

    def uncertain(self, key: str) -> bool:
        """Whether a record attempt of this key failed without an answer (it may be recorded)."""
        return key in self._uncertain

    def _remember_uncertain(self, keys: list[str]) -> None:
        for key in keys:
            self._uncertain[key] = None
        # A long outage with many webhook keys never retried: forget the oldest. Their
        # records, if any, are still swept, once the in-flight limit has passed.
        excess = len(self._uncertain) - _UNCERTAIN_MAX
        if excess > 0:
            for key in list(self._uncertain)[:excess]:  # list(): one step under the GIL
                self._uncertain.pop(key, None)

    def _record(self, checked: Sequence[Checked | Rejected]) -> list[Verdict]:
        verdicts: list[Verdict | None] = [c if isinstance(c, Rejected) else None for c in checked]
        todo = [(n, c) for n, c in enumerate(checked) if isinstance(c, Checked)]
        retried: set[str] = set()  # an attempt of ours failed midway: it may have recorded them
        for attempt in range(1, self._attempts + 1):
            if not todo:
                break
            failed = self._round(todo, verdicts, retried)
            if attempt == self._attempts:
                self._unindex([item.alert.idempotency_key for (_, item), _ in failed])
                for (index, item), error in failed:
                    verdicts[index] = self._give_up(item, error, attempt)
            todo = [entry for entry, _ in failed]
            retried.update(item.alert.idempotency_key for _, item in todo)
        out = [v for v in verdicts if v is not None]
        self._count(out)
        return out

    def _unindex(self, keys: list[str]) -> None:
        """Take quarantined alerts out of the pending index, where their attempts put them.

        Best effort: the sweep would find each there and quarantine it a second time.
        """
        if keys:
            try:
                self._redis.zrem(self._pending_key, *keys)
            except redis.RedisError:
                log.warning("quarantined alerts left in the pending index: %s", keys)

    def _round(
        self, todo: list[tuple[int, Checked]], verdicts: list[Verdict | None], retried: set[str]
    ) -> list[tuple[tuple[int, Checked], Exception]]:
        """One pipelined round trip for `todo`: fills their verdicts, returns what failed.

        An alert fails on its own when its document cannot be written or its record's script
        answers an error about its keys: it is returned with the error. An error on the
        instance's pending index fails every alert alike: it raises, as Redis being away does.
        An error reading a critical alert's snapshot or writing its context fails nothing: the
        record is what accepts an alert (its shard reads the snapshot itself; the agent's page
        lacks the context).
        """
        now = self._clock()
        read_after = time.monotonic()
        failed: list[tuple[tuple[int, Checked], Exception]] = []
        sent: list[tuple[int, Checked, int, int]] = []  # index, item, first reply, how many
        pipe = batch(self._redis)
        # Queued as Pipeline.execute_command queues them, (args, options), without its checks
        # per command: execute() reads only the args.
        stack = pipe.command_stack
        for index, item in todo:
            try:
                commands = self._commands(item, now)
            except Exception as exc:  # this alert's failure, not the batch's
                failed.append(((index, item), exc))
                continue
            sent.append((index, item, len(stack), len(commands)))
            stack.extend([(command, {}) for command in commands])
        if not sent:
            return failed
        results = execute(pipe, self._accept, item_errors=True)
        for index, item, first, count in sent:
            outcome = self._outcome(
                item,
                results[first : first + count],
                read_after,
                ours=item.alert.idempotency_key in retried,
            )
            if isinstance(outcome, Exception):
                failed.append(((index, item), outcome))
            else:
                verdicts[index] = outcome
        return failed

    async def record_async(self, item: Checked | Rejected, pipeline: AutoPipeline) -> Verdict:
        """Record one checked alert through an event loop's auto-pipeline; its verdict.

        The webhook's accept: each request awaits its own commands, and the requests in flight
        together share one round trip (the AutoPipeline coalesces them), with no thread hop.
        Same verdicts, retries and quarantine as record(). Raises redis errors about Redis as a
        whole: then nothing was recorded that the caller may acknowledge.
        """
        if isinstance(item, Rejected):
            self._count([item])
            return item
        key = item.alert.idempotency_key
        ours = False  # an attempt of ours failed midway: it may have recorded the alert
        error: Exception | None = None
        with self._stats.stage("accept").time():
            for attempt in range(1, self._attempts + 1):
                now, read_after = self._clock(), time.monotonic()
                try:
                    commands = self._commands(item, now)
                except Exception as exc:
                    error = exc
                    break
                futures = [pipeline.send(*command) for command in commands]
                replies = await settled(futures)
                try:
                    for reply in replies:
                        if isinstance(reply, BaseException) and not (
                            isinstance(reply, redis.ResponseError) and item_error(reply)
                        ):
                            raise reply
                    outcome = self._outcome(item, replies, read_after, ours=ours)
                except redis.RedisError:
                    self._remember_uncertain([key])
                    raise
                if not isinstance(outcome, Exception):
                    self._count([outcome])
                    return outcome
                error, ours = outcome, True
                if attempt == self._attempts:
                    self._unindex([key])
        assert error is not None  # noqa: S101 - the loop returns or records an error
        verdict = self._give_up(item, error, attempt)
        self._count([verdict])
        return verdict

    def _give_up(self, item: Checked, error: Exception, attempts: int) -> Quarantined:
        """Quarantine an alert whose own commands failed `attempts` times."""
        return self.quarantine(
            item.payload,
            error,
            source=item.source,
            topic=item.topic,
            key=item.alert.idempotency_key,
            attempts=attempts,
        )

    def _commands(self, item: Checked, now: float) -> list[tuple[Any, ...]]:
        """One alert's commands, in the order _outcome reads their replies.

        Raises on an alert whose document or arguments cannot be written (its own failure).
        """
        alert = item.alert
        context = orjson.dumps(item.doc)
        keys, args = accept_args(self._keys, alert, self._ttl)
        commands: list[tuple[Any, ...]] = [
            # Indexed first: a crash between the two leaves an index entry the sweep discards,
            # never a record that nothing would resume.
            ("ZADD", self._pending_key, "NX", now, alert.idempotency_key),
            # The context is written with NX under a reference derived from the key, so a
            # duplicate can never overwrite what the first delivery stored.
            ("SET", self._keys.context(alert.reference_id), context, "EX", self._ttl, "NX"),
            ("EVALSHA", self._accept.sha, len(keys), *keys, *args),
        ]
        if item.urgent:
            # The shard reads a sensor it does not hold before it can decide: one round trip
            # in a row with its own, on a critical alert's way (README "Performance").
            commands.append(("GET", self._keys.snapshot(alert.customer_id, alert.sensor_id)))
        return commands

    def _outcome(
        self, item: Checked, replies: Sequence[Any], read_after: float, *, ours: bool
    ) -> Verdict | Exception:
        """The verdict from one alert's replies (see _commands), or the error that failed it."""
        indexed, context, claimed = replies[:3]
        if isinstance(indexed, Exception):
            raise indexed  # the pending index is the instance's, not this alert's
        if isinstance(claimed, Exception):
            return claimed
        if isinstance(context, Exception):
            log.warning("context of %s not stored: %s", item.alert.idempotency_key, context)
        reply = replies[3] if len(replies) > 3 else None
        # An unreadable snapshot is not handed on: its shard reads it itself.
        unread = len(replies) <= 3 or isinstance(reply, Exception)
        return self._verdict(
            item.alert,
            claimed=claimed,
            snapshot=None if unread else Snapshot(reply or b"", read_after),
            ours=ours,
        )

    def _verdict(
        self,
        alert: Alert,
        *,
        claimed: Any,  # noqa: ANN401 - 1, or the recorded alert's identity
        snapshot: Snapshot | None,
        ours: bool,
    ) -> Verdict:
        key = alert.idempotency_key
        # Recorded before, unless by our own attempt that never heard back (or failed midway:
        # `ours`): then this is the delivery that goes on. (Another delivery may have written
        # it instead; routing it once more is a replay, which the record's state machine
        # decides.)
        first = key in self._uncertain or ours
        self._uncertain.pop(key, None)
        if claimed != 1:
            differ = _differing(alert, claimed)
            if differ:
                return Conflict(key, differ)
            if not first:
                return Duplicate(key)
        return Accepted(alert, snapshot)

    def _count(self, verdicts: list[Verdict]) -> None:
        accepted = 0  # counted once per batch: a counter update takes two locks
        for v in verdicts:
            if isinstance(v, Accepted):
                accepted += 1
            elif isinstance(v, Duplicate):
                self._stats.refused(Outcome.SUPPRESSED, Reason.DUPLICATE, key=v.idempotency_key)
            elif isinstance(v, Conflict):
                self._stats.refused(
                    Outcome.REJECTED,
                    Reason.CONFLICT,
                    key=v.idempotency_key,
                    detail="recorded for another alert: " + ", ".join(v.fields),
                )
            else:
                detail = "; ".join(f"{p.field}: {p.reason}" for p in v.problems)[:300]
                self._stats.refused(
                    Outcome.REJECTED, v.reason, key=v.idempotency_key, detail=detail
                )
        if accepted:
            self._stats.count(_ACCEPTED, n=accepted)


def _differing(alert: Alert, recorded: Any) -> tuple[str, ...]:  # noqa: ANN401
    """The identity fields in which `alert` differs from the one recorded under its key.

    A record written before identities were compared may lack a field: absent is no conflict.
    """
    if not isinstance(recorded, list) or len(recorded) != len(ACCEPT_IDENTITY):
        return ()
    mine = (
        alert.sensor_id,
        alert.customer_id,
        alert.alert_type,
        "firing" if alert.firing else "resolved",
        alert.telemetry_hash,
    )
    return tuple(
        name
        for name, ours, theirs in zip(ACCEPT_IDENTITY, mine, recorded, strict=True)
        if theirs is not None and text(theirs) != ours
    )
