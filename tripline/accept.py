"""The one accept path for both doors: validate, claim the key, record durably, then answer."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import orjson
import redis

from messages import Alert, Outcome, Priority, Reason, Snapshot, State
from pipeline.prioritise import PriorityRules, prioritise
from pipeline.validate import Limits, Rejected, validate
from tripline.stats import Stats
from tripline.store import ACCEPT_LUA, Keys, PipelinedScript, accept_args, execute

_UNCERTAIN_MAX = 100_000


@dataclass(frozen=True, slots=True)
class Checked:
    """A payload that passed validation, prioritised: ready to be recorded."""

    alert: Alert
    doc: dict[str, Any]
    """The decoded payload, stored as the alert's context."""

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
    """The key was already recorded: acknowledge, do nothing else."""

    idempotency_key: str


Verdict = Accepted | Duplicate | Rejected


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
        client: redis.Redis,
        keys: Keys,
        limits: Limits,
        rules: PriorityRules,
        record_ttl: int,
        stats: Stats,
        clock: Callable[[], float],
        pending_key: str = "",
    ) -> None:
        """Keep the collaborators; thread-safe (redis-py pools its connections).

        `pending_key` is this instance's index of unfinished alerts (a sorted set): an alert
        enters it before its record exists, and the resume sweep takes it out once decided.
        """
        self._redis, self._keys, self._limits = client, keys, limits
        self._pending_key = pending_key or keys.pending("default")
        self._rules, self._ttl, self._stats, self._clock = rules, record_ttl, stats, clock
        self._accept = PipelinedScript(client, ACCEPT_LUA)
        # Keys whose record attempt failed without an answer, oldest first (a dict as an
        # ordered set): Redis may have written their records before the connection broke.
        # The next attempt that finds one recorded routes it, as nothing else would (the
        # failed attempt routed nothing), and the resume sweep does not take it for in flight.
        self._uncertain: dict[str, None] = {}

    def accept(self, items: Sequence[tuple[bytes, bool]]) -> list[Verdict]:
        """Accept a batch of (payload, retained) pairs: check each, then record them together.

        Returns:
            One verdict per item, in order. Raises redis errors: then nothing was acknowledged
            and the caller keeps the batch (the broker keeps it too, unacknowledged).
        """
        now = self._clock()
        return self.record([self.check(body, retained, now=now) for body, retained in items])

    def check(self, body: bytes, retained: bool, *, now: float | None = None) -> Checked | Rejected:
        """Decode and validate one payload (its only decode), and give it its priority."""
        checked = validate(
            body, now=self._clock() if now is None else now, limits=self._limits, retained=retained
        )
        if isinstance(checked, Rejected):
            return checked
        alert, doc = checked
        alert = replace(alert, priority=prioritise(alert.alert_type, alert.severity, self._rules))
        return Checked(alert, doc)

    def record(self, checked: Sequence[Checked | Rejected]) -> list[Verdict]:
        """Claim and record checked alerts in one pipelined round trip; one verdict each.

        Raises redis errors: then nothing was recorded that the caller may acknowledge.
        """
        with self._stats.stage_seconds.labels("accept").time():
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
        now = self._clock()
        verdicts: list[Verdict | None] = []
        read_after = time.monotonic()
        pending: list[tuple[int, Alert, int, bool]] = []  # verdict, alert, reply, snapshot read?
        pipe = self._redis.pipeline(transaction=False)
        for item in checked:
            if isinstance(item, Rejected):
                verdicts.append(item)
                continue
            alert = item.alert
            # Indexed first: a crash between the two leaves an index entry the sweep discards,
            # never a record that nothing would resume.
            pipe.zadd(self._pending_key, {alert.idempotency_key: now}, nx=True)
            # The context is written with NX under a reference derived from the key, so a
            # duplicate can never overwrite what the first delivery stored.
            pipe.set(
                self._keys.context(alert.reference_id),
                orjson.dumps(item.doc),
                nx=True,
                ex=self._ttl,
            )
            keys, args = accept_args(self._keys, alert, self._ttl)
            self._accept.queue(pipe, keys, args)
            claim = len(pipe.command_stack) - 1
            if item.urgent:
                # The shard reads a sensor it does not hold before it can decide: one round trip
                # in a row with its own, on a critical alert's way (README "Performance").
                pipe.get(self._keys.snapshot(alert.customer_id, alert.sensor_id))
            pending.append((len(verdicts), alert, claim, item.urgent))
            verdicts.append(None)
        if pending:
            results = execute(pipe, self._accept)
            for index, alert, claim, read in pending:
                # Recorded before, unless by our own attempt that never heard back: then this
                # is the delivery that goes on. (Another delivery may have written it instead;
                # routing it once more is a replay, which the record's state machine decides.)
                first = alert.idempotency_key in self._uncertain
                self._uncertain.pop(alert.idempotency_key, None)
                if results[claim] != 1 and not first:
                    verdicts[index] = Duplicate(alert.idempotency_key)
                    continue
                snapshot = Snapshot(results[claim + 1] or b"", read_after) if read else None
                verdicts[index] = Accepted(alert, snapshot)
        out = [v for v in verdicts if v is not None]
        self._count(out)
        return out

    def _count(self, verdicts: list[Verdict]) -> None:
        for v in verdicts:
            if isinstance(v, Accepted):
                self._stats.count(State.ACCEPTED.value)
            elif isinstance(v, Duplicate):
                self._stats.refused(Outcome.SUPPRESSED, Reason.DUPLICATE, key=v.idempotency_key)
            else:
                detail = "; ".join(f"{p.field}: {p.reason}" for p in v.problems)[:300]
                self._stats.refused(
                    Outcome.REJECTED, v.reason, key=v.idempotency_key, detail=detail
                )
