"""An actor inbox in which work on critical alerts goes ahead of the rest: the critical lane.

pykka's inbox is a FIFO queue: a critical alert handed to a shard, the enricher or the dialer
behind a storm's batches waited for every one of them. In this inbox a message about a
critical alert overtakes the waiting messages — except those about any of its sensors, so a
sensor's alerts (and its resolve) are still handled in the order they came. Everything else
keeps its order: among the urgent messages, and among the others.

There is no aging: while critical work keeps arriving, the rest waits — on purpose, and
bounded by how many critical alerts a fleet raises (the storm's non-critical alerts become
tasks without a CRM lookup). Messages about no sensor (a Ping, pykka's stop) are overtaken
too: the supervisor stops the subscribers first, so at shutdown the urgent flow has ended.
"""

from __future__ import annotations

import queue
from collections import Counter, deque
from typing import Any

from pykka._envelope import Envelope

from tripline.messages import AlertBatch, EnrichBatch, Priority, WorkBatch


def urgent(message: object) -> bool:
    """Whether a message carries work on a critical alert."""
    match message:
        case AlertBatch() | EnrichBatch():
            return any(a.priority == Priority.CRITICAL for a in message.alerts)
        case WorkBatch():
            return any(w.alert.priority == Priority.CRITICAL for w in message.works)
    return False


def sensors(message: object) -> frozenset[str]:
    """The sensors a message is about (its place among their messages must be kept)."""
    match message:
        case AlertBatch() | EnrichBatch():
            return frozenset(a.sensor_id for a in message.alerts)
        case WorkBatch():
            return frozenset(w.alert.sensor_id for w in message.works)
    sensor = getattr(message, "sensor_id", None)
    if isinstance(sensor, str):
        return frozenset((sensor,))
    alert = getattr(message, "alert", None)
    sensor = getattr(alert, "sensor_id", None)
    return frozenset((sensor,)) if isinstance(sensor, str) else frozenset()


class UrgentFirst(queue.Queue[Envelope[Any]]):
    """A thread-safe inbox: urgent messages first, each sensor's messages in order.

    queue.Queue's own hooks (as PriorityQueue uses them): its lock, conditions and counters
    stay as they are.
    """

    def _init(self, maxsize: int) -> None:  # noqa: ARG002 - queue.Queue's hook: unbounded
        self._urgent: deque[Envelope[Any]] = deque()
        self._rest: deque[tuple[Envelope[Any], frozenset[str]]] = deque()
        self._waiting: Counter[str] = Counter()  # sensors of the messages in _rest

    def _qsize(self) -> int:
        return len(self._urgent) + len(self._rest)

    def _put(self, item: Envelope[Any]) -> None:
        message = item.message
        mine = sensors(message)
        # Behind a waiting message about one of its sensors, an urgent one waits too (that one
        # is not urgent, or it would be in the urgent queue): rare, and order matters more.
        if urgent(message) and not any(sensor in self._waiting for sensor in mine):
            self._urgent.append(item)
            return
        self._rest.append((item, mine))
        self._waiting.update(mine)

    def _get(self) -> Envelope[Any]:
        if self._urgent:
            return self._urgent.popleft()
        item, mine = self._rest.popleft()
        self._waiting.subtract(mine)
        for sensor in mine:
            if self._waiting[sensor] <= 0:
                del self._waiting[sensor]
        return item


def urgent_first_inbox() -> UrgentFirst:
    """For an actor class: `_create_actor_inbox = staticmethod(urgent_first_inbox)`."""
    return UrgentFirst()
