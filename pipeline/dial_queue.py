"""The dialer's waiting work: priority queues, their indexes and counts, admission and aging.

A plain object — no I/O, no clock, no threads: the dialer actor feeds it work and `now`, and
acts on what it answers (the head to start, the calls to turn into tasks, when to look again).
Mopidy keeps such logic in plain controllers behind its actors; this is the dialer's.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from tripline.messages import DialIntent, Outcome, Priority, Reason, TaskIntent
from tripline.pipeline.freshness import stale_alert
from tripline.pipeline.govern import Admission, GovernRules, Occupancy, admit, is_stale, rank

Work = DialIntent | TaskIntent


@dataclass(frozen=True, slots=True)
class StoredTask:
    """A queued task kept by reference: its body waits in the persisted queue (Redis).

    Tasks can queue for hours behind the rate budget (a fleet incident makes thousands); holding
    each whole alert in memory meanwhile would grow with the storm.
    """

    key: str
    """The alert's idempotency key."""
    priority: Priority
    """Its queue."""
    outcome: Outcome
    """The outcome its record must have for it to be raised (its claim goes with the body's
    read: one round trip, actors/dialing/tasks.py)."""


Queued = Work | StoredTask


@dataclass(slots=True)
class Entry:
    """One piece of waiting work, in its priority's queue."""

    enqueued_at: float
    seq: int
    work: Queued
    cancelled: bool = False
    """Withdrawn or cancelled while queued: skipped when it reaches the head."""
    delayed: bool = False
    """Counted among the calls waiting out their pending delay."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Conditions:
    """What the dialer knows when it asks what may go next."""

    rules: GovernRules
    occupancy: Occupancy | None
    incident: str | None
    """Why non-critical calls become tasks (a fleet incident is open), or None."""
    paused: bool
    """An operator holds every call (tasks go on)."""
    in_flight: Mapping[bool, int]
    """Requests in flight: critical?, count."""
    caps: Mapping[bool, int]
    """Concurrency caps: critical?, cap."""
    batching: Callable[[Priority], bool]
    """Whether calls of a priority go in batches (no slot, no token each)."""


@dataclass(frozen=True, slots=True)
class Deferral:
    """A waiting call that will not be placed: the dialer turns it into a task."""

    call: DialIntent
    reason: Reason
    detail: str


@dataclass(slots=True)
class Choice:
    """What `choose` found: the priority whose head goes next, and what it met on the way."""

    priority: Priority | None = None
    """None: nothing may go now."""
    batched: bool = False
    deferrals: list[Deferral] = field(default_factory=list)
    wake_at: float | None = None
    """The earliest time a call held by its pending delay may go: look again then."""

    def wake(self, at: float) -> None:
        """Look again at `at` at the latest."""
        self.wake_at = at if self.wake_at is None else min(self.wake_at, at)


class DialQueue:
    """Priority queues of dial work and tasks, with the indexes cancellation needs."""

    def __init__(self) -> None:
        """Start empty."""
        self._queues: dict[Priority, deque[Entry]] = {p: deque() for p in Priority}
        self.live = dict.fromkeys(Priority, 0)
        """Waiting and not cancelled, by priority (what /status shows), kept as work moves:
        counting the queues per request is work a storm's backlog makes large."""
        self.calls_waiting = 0
        self.delayed = 0
        """Calls whose pending delay has not passed."""
        self._delays: list[tuple[float, int, Entry]] = []  # heap: when each delay ends
        self._waiting: dict[str, Entry] = {}  # calls by intent id
        self._by_sensor: dict[str, set[str]] = {}  # non-critical calls by sensor
        self._anchored: set[str] = set()  # a resolve could not cancel them: others joined
        self._seq = itertools.count()

    # --- in and out ------------------------------------------------------------------------

    def add(self, work: Work, *, at: float, front: bool = False) -> None:
        """Queue `work` (at the front: it goes again next, as a call back from a failed try)."""
        # A task is held by reference (its body is persisted): thousands can wait for budget.
        held: Queued = (
            StoredTask(work.alert.idempotency_key, work.priority, work.outcome)
            if isinstance(work, TaskIntent)
            else work
        )
        entry = Entry(at, next(self._seq), held)
        queue = self._queues[work.priority]
        if front:
            queue.appendleft(entry)
        else:
            queue.append(entry)
        self.live[work.priority] += 1
        if isinstance(work, DialIntent):
            self.calls_waiting += 1
            if work.not_before > at:
                entry.delayed = True
                self.delayed += 1
                heapq.heappush(self._delays, (work.not_before, entry.seq, entry))
            key = work.intent_id
            self._waiting[key] = entry
            # A resolve cancels a waiting non-critical call, and any re-attempt: a critical
            # alert's first call is never withdrawn, but its ladder ends with the resolve.
            cancellable = work.priority != Priority.CRITICAL or work.attempt > 1
            if cancellable and key not in self._anchored:
                self._by_sensor.setdefault(work.alert.sensor_id, set()).add(key)

    def pop(self, priority: Priority) -> Entry:
        """Take the head of a priority's queue off it and out of the indexes."""
        entry = self._queues[priority].popleft()
        if not entry.cancelled:
            self._settle(entry)
        self._unindex(entry)
        return entry

    def cancel(self, entry: Entry) -> None:
        """Withdrawn while queued: skipped when it reaches the head of its queue."""
        if not entry.cancelled:
            entry.cancelled = True
            self._settle(entry)
        self._unindex(entry)

    def withdraw(self, intent_id: str) -> None:
        """Cancel the waiting call of `intent_id`, if one waits."""
        entry = self._waiting.get(intent_id)
        if entry is not None:
            self.cancel(entry)

    def anchor(self, intent_id: str) -> None:
        """A resolve could not cancel this call (alerts were grouped into it): never again."""
        self._anchored.add(intent_id)

    def calls_of(self, sensor_id: str) -> list[Entry]:
        """The sensor's waiting non-critical calls (a resolve may cancel them)."""
        return [self._waiting[key] for key in self._by_sensor.get(sensor_id, ())]

    def waiting_calls(self, *, except_priority: Priority) -> Iterator[Entry]:
        """Every waiting call, in queue order, but those of `except_priority`."""
        for priority, queue in self._queues.items():
            if priority == except_priority:
                continue
            for entry in queue:
                if isinstance(entry.work, DialIntent) and not entry.cancelled:
                    yield entry

    def end_delays(self, now: float) -> None:
        """Calls whose pending delay has passed stop counting as delayed."""
        while self._delays and self._delays[0][0] <= now:
            entry = heapq.heappop(self._delays)[2]
            if entry.delayed:
                entry.delayed = False
                self.delayed -= 1

    def __len__(self) -> int:
        """Entries held, cancelled ones not yet skipped included."""
        return sum(len(q) for q in self._queues.values())

    def __bool__(self) -> bool:
        """Whether any entry is held."""
        return any(self._queues.values())

    # --- what goes next ----------------------------------------------------------------------

    def expire_stale(self, now: float, rules: GovernRules) -> list[Deferral]:
        """Calls at their queue's head past their age: out, as tasks (deferred/stale).

        Past their priority's age waiting here, or past it by their sensor's clock (a backlog
        replayed after an outage). Here, before the rate budget is asked: a stale backlog must
        not spend it on calls the last checks would refuse anyway.
        """
        stale: list[Deferral] = []
        for priority, queue in self._queues.items():
            while queue and queue[0].cancelled:
                queue.popleft()
            while queue and isinstance(work := queue[0].work, DialIntent):
                waited = now - max(queue[0].enqueued_at, work.not_before)
                if is_stale(priority, waited, rules):
                    detail = f"waited {now - queue[0].enqueued_at:.0f}s for the dialer"
                elif old := stale_alert(
                    work.alert.timestamp, priority, now=now, limits=rules.max_alert_age
                ):
                    detail = old.detail
                else:
                    break
                self.pop(priority)
                stale.append(Deferral(work, Reason.STALE, detail))
        return stale

    def choose(self, now: float, conditions: Conditions) -> Choice:
        """The priority whose head goes next: the lowest aged rank among the admissible.

        Heads that cannot dial (a fleet incident, a saturated queue) leave as deferrals on the
        way; a call waiting out its pending delay sets the time to look again.
        """
        choice = Choice()
        best: tuple[float, int, Priority, bool] | None = None
        for priority, queue in self._queues.items():
            admission = self._admit_head(priority, queue, now, conditions, choice)
            if not queue or admission == Admission.HOLD:
                continue
            head = queue[0]
            calls = isinstance(head.work, DialIntent)
            if calls and conditions.paused:
                continue  # paused by an operator: calls wait, tasks go on
            if isinstance(head.work, DialIntent) and head.work.not_before > now:
                choice.wake(head.work.not_before)  # its pending delay: a resolve may cancel it
                continue
            batched = calls and conditions.batching(priority)
            critical = priority == Priority.CRITICAL
            if not batched and conditions.in_flight[critical] >= conditions.caps[critical]:
                continue
            candidate = (
                rank(priority, now - head.enqueued_at, conditions.rules),
                head.seq,
                priority,
                batched,
            )
            if best is None or candidate < best:
                best = candidate
        if best is not None:
            choice.priority, choice.batched = best[2], best[3]
        return choice

    def _admit_head(
        self,
        priority: Priority,
        queue: deque[Entry],
        now: float,
        conditions: Conditions,
        choice: Choice,
    ) -> Admission:
        """Clear the head of what cannot dial (cancelled, incident, saturated); admit the rest."""
        while queue:
            head = queue[0]
            if head.cancelled:
                queue.popleft()
                continue
            if not isinstance(head.work, DialIntent):
                return Admission.DIAL  # a task is no call: occupancy does not hold it
            if conditions.incident is not None and priority != Priority.CRITICAL:
                self.pop(priority)
                choice.deferrals.append(
                    Deferral(head.work, Reason.FLEET_INCIDENT, conditions.incident)
                )
                continue
            admission = admit(priority, conditions.occupancy, now=now, rules=conditions.rules)
            if admission != Admission.SATURATED:
                return admission
            self.pop(priority)
            choice.deferrals.append(
                Deferral(head.work, Reason.QUEUE_SATURATED, "the queue is saturated")
            )
        return Admission.DIAL

    # --- bookkeeping -------------------------------------------------------------------------

    def _settle(self, entry: Entry) -> None:
        """The entry no longer waits (started, deferred or cancelled): the counts follow."""
        self.live[entry.work.priority] -= 1
        if isinstance(entry.work, DialIntent):
            self.calls_waiting -= 1
        if entry.delayed:
            entry.delayed = False
            self.delayed -= 1

    def _unindex(self, entry: Entry) -> None:
        work = entry.work
        if isinstance(work, DialIntent):
            self._waiting.pop(work.intent_id, None)
            self._anchored.discard(work.intent_id)
            keys = self._by_sensor.get(work.alert.sensor_id)
            if keys is not None:
                keys.discard(work.intent_id)
                if not keys:
                    del self._by_sensor[work.alert.sensor_id]


class RecentResolves:
    """Resolves seen lately, by sensor.

    A resolve can overtake its firing alert (which visits the CRM first); the call is then
    cancelled as it arrives.
    """

    def __init__(self, *, kept_seconds: float, most: int) -> None:
        """Keep each for `kept_seconds`, at most `most` of them (the oldest go first)."""
        self._kept, self._most = kept_seconds, most
        self._seen: dict[str, tuple[float, str, float]] = {}  # sensor -> (ts, key, noted at)

    def note(self, sensor_id: str, timestamp: float, key: str, now: float) -> None:
        """A resolve of `sensor_id` stamped `timestamp` arrived at `now`."""
        # Kept in arrival order (re-inserted on update), so the oldest go first: bounded in
        # time and in size, O(1) per resolve.
        self._seen.pop(sensor_id, None)
        self._seen[sensor_id] = (timestamp, key, now)
        while self._seen:
            oldest, (_, _, noted_at) = next(iter(self._seen.items()))
            if now - noted_at < self._kept and len(self._seen) <= self._most:
                break
            del self._seen[oldest]

    def cleared(self, call: DialIntent, now: float) -> str | None:
        """The key of a resolve that arrived before this (older) non-critical call, if any."""
        seen = self._seen.get(call.alert.sensor_id)
        if call.priority == Priority.CRITICAL or seen is None:
            return None
        timestamp, key, noted_at = seen
        fresh = now - noted_at < self._kept
        return key if fresh and call.alert.timestamp <= timestamp else None
