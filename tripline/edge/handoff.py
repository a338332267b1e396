"""The webhook's hand-off: what a busy door accepted is decided where a door is idle.

CPython runs one thread at a time per process. A worker whose HTTP door is busy accepting also
decided every alert it accepted (the shards, the enricher, the dialer: ~0.6 ms of CPU per alert
against ~0.2 ms to accept one), so one client's requests waited for the worker's own deciding
and a second worker stood idle. Now a busy door records its alerts as before — a 202 still
follows only the durable record — but hands the non-critical ones it accepted to a Redis list
shared by every worker and instance of the key prefix, in the round trip that the next
requests' commands share (nothing waits for it) — but only while another door says it is idle
(a sorted set of idle doors: with one worker, or every door busy, a hand-off only made the
alerts wait for the door that accepted them). Whoever has an idle door takes them at once (a
blocking pop) and decides them; a busy door takes them too once the oldest has waited
`[http] handoff_max_wait_ms` (a door that went busy or away after it said it was idle), so
they are decided a little later rather than never. Critical alerts are never handed off: the
door that accepted one routes it at once (the critical lane).

Nothing is lost: a handed-off alert is in the accepting instance's pending index like any
other. An entry popped by a worker that died before routing it is re-routed by that
instance's resume sweep (after `_IN_FLIGHT_LIMIT`, 180 s, the limit for anything routed and
not decided), and a record routed twice is decided once (its state changes in one script).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
import redis

from tripline.adapters.redis_clients import AsyncRedis, aclose
from tripline.adapters.redis_io import AutoPipeline, settled
from tripline.adapters.store import alert_from_dict, alert_to_dict
from tripline.messages import Alert, Priority

log = logging.getLogger("tripline.http")

BATCH = 500
"""The most alerts one take pops (and routes in one call)."""
QUIET_SECONDS = 0.005
"""A door that answered nothing for this long, with nothing in hand, is idle."""
BLOCK_SECONDS = 0.25
"""How long an idle door's blocking pop waits before it looks at its door again."""
IDLE_FRESH_SECONDS = 1.0
"""A door that said it was idle this recently counts as one a busy door may hand off to."""
_IDLE_EVERY = 0.2  # an idle door says so at most this often (one ZADD riding a round trip)
_IDLE_FORGET = 60.0  # entries older than this (doors gone) are removed as others are written
_CLOSE_SECONDS = 2.0  # the longest aclose() waits for the taker and its connection
_BACKOFF = (0.5, 5.0)  # after a Redis error: the first wait, doubling up to the second


@dataclass(slots=True)
class Door:
    """How busy one event loop's webhook door is: requests in hand, and the last answer."""

    in_hand: int = 0
    last_done: float = -1e9
    """time.monotonic() when the last request left accept()."""
    since_flush: int = 0
    """Requests accepted since the intake last handed its alerts on."""
    others_idle: bool = False
    """Whether another door said it was idle lately (its Taker keeps this): handing off to
    nobody would only delay the alerts until this busy door took them back itself."""

    def enter(self) -> None:
        """A request started accept()."""
        self.in_hand += 1
        self.since_flush += 1

    def leave(self, now: float) -> None:
        """A request left accept()."""
        self.in_hand -= 1
        self.last_done = now

    def busy(self) -> bool:
        """Whether the alerts about to be handed on came from a stream of requests.

        A lone request (nothing else in hand, nothing else since the last hand-on) is routed
        where it was accepted: handing it off would cost a round trip and spare nothing.
        """
        return self.in_hand > 0 or self.since_flush > 1

    def idle(self, now: float) -> bool:
        """Nothing in hand and nothing answered for QUIET_SECONDS: free to decide others'."""
        return self.in_hand == 0 and now - self.last_done >= QUIET_SECONDS


def someone_else(members: list[bytes], me: str) -> bool:
    """Whether the idle doors read from Redis (their names) include one that is not `me`."""
    mine = me.encode()
    return any(member != mine for member in members)


def take_now(*, idle: bool, oldest_age: float | None, max_wait: float) -> bool:
    """Whether a door takes handed-off alerts now: it is idle, or the oldest waited long enough.

    `oldest_age`: seconds the list's oldest entry has waited (None: the list is empty).
    """
    if oldest_age is None:
        return False
    return idle or oldest_age >= max_wait


def encode(alerts: list[Alert], at: float) -> list[bytes]:
    """The list entries of alerts handed off at `at` (epoch seconds)."""
    stamp = round(at, 3)
    return [orjson.dumps({"at": stamp, "alert": alert_to_dict(a)}) for a in alerts]


def decode(entry: bytes) -> tuple[float, Alert]:
    """When an entry was handed off and its alert. Raises ValueError on a foreign entry."""
    try:
        doc = orjson.loads(entry)
        alert = alert_from_dict(doc["alert"])
        return float(doc["at"]), alert
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a handed-off alert: {entry[:200]!r}") from exc


def oldest_age(head: bytes | None, now: float) -> float | None:
    """Seconds the list's head has waited (None: empty; a foreign head counts as overdue)."""
    if head is None:
        return None
    try:
        at, _ = decode(head)
    except ValueError:
        return float("inf")  # taken (and dropped) at once: nothing else may wait behind it
    return max(0.0, now - at)


def handable(alert: Alert) -> bool:
    """Whether an accepted alert may be handed off: never a critical one (the critical lane)."""
    return alert.priority != Priority.CRITICAL


class Taker:
    """Takes handed-off alerts for one event loop's door and routes them to its own shards.

    A task on the door's own loop: when the door is idle it says so (a sorted set of idle
    doors, `idle_key`) and waits on the list with a blocking pop (its own connection, so the
    door's auto-pipeline never waits behind it); when busy it takes its name off that set,
    notes whether another door is on it (`Door.others_idle`: the intake hands off only then),
    and looks at the list's head every quarter of `max_wait`, taking what has waited that long.
    """

    def __init__(
        self,
        *,
        key: str,
        idle_key: str,
        door: Door,
        pipeline: Callable[[], AutoPipeline],
        connect: Callable[[], AsyncRedis],
        route: Callable[[list[Alert]], Awaitable[None]],
        max_wait: float,
        clock: Callable[[], float] = time.time,
        on_taken: Callable[[int], None] = lambda _n: None,
    ) -> None:
        """Keep the collaborators; nothing connects until start()."""
        self._key, self._idle_key, self._door, self._pipeline = key, idle_key, door, pipeline
        self.name = uuid.uuid4().hex  # this door, on the set of idle ones
        self._said_idle = float("-inf")  # time.monotonic() when it last said so
        self._idle_failed = False  # the idle set's last round trip failed (logged once)
        self._listed = False  # this door's name may be on the idle set
        self._connect, self._route, self._max_wait = connect, route, max_wait
        self._clock, self._on_taken = clock, on_taken
        self._client: AsyncRedis | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def start(self) -> None:
        """Start taking, on the running loop."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="webhook-handoff")

    async def aclose(self) -> None:
        """Stop taking; what was popped and not yet routed is the resume sweep's to redo."""
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            # Bounded: a pop cancelled while its connection was being made can take redis-py
            # a while to unwind, and a stopping door must not wait on it (tests: 30 s hangs).
            await asyncio.wait({self._task}, timeout=_CLOSE_SECONDS)
            self._task = None
        await self._drop_client()
        if self._listed:  # off the idle set at once: nobody hands off to a stopped door
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    self._pipeline().send("ZREM", self._idle_key, self.name), _CLOSE_SECONDS
                )

    async def take_once(self) -> int:
        """One look at the list, taking and routing what the policy says; how many routed."""
        if self._door.idle(time.monotonic()):
            await self._say_idle()
            entries = await self._blocking_take()
        else:
            self._said_idle = float("-inf")
            await asyncio.sleep(self._max_wait / 4)
            pipeline, now = self._pipeline(), self._clock()
            head, *idle = await settled(
                [
                    pipeline.send("LINDEX", self._key, 0),
                    pipeline.send("ZREM", self._idle_key, self.name),
                    pipeline.send(*self._fresh(now)),
                ]
            )
            self._note_others(*idle)
            self._listed = isinstance(idle[0], BaseException)  # off it, unless ZREM failed
            if isinstance(head, BaseException):
                raise head
            now_idle = self._door.idle(time.monotonic())
            age = oldest_age(head, self._clock())
            if not take_now(idle=now_idle, oldest_age=age, max_wait=self._max_wait):
                return 0
            entries = await self._pipeline().send("LPOP", self._key, BATCH) or []
        return await self._deliver(entries)

    async def _run(self) -> None:
        wait = _BACKOFF[0]
        while not self._closing:
            try:
                await self.take_once()
                wait = _BACKOFF[0]
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._closing:
                    # The cancel came back as an error: a cluster client turns a pop
                    # cancelled mid-connect into a connection error and connects again.
                    # Stop now, not after a back-off: aclose() would give up waiting, the
                    # loop close with this task pending, and its coroutine run these
                    # handlers at garbage collection with no loop (an error there).
                    return
                if isinstance(exc, redis.RedisError):
                    log.warning("webhook hand-off: %r (again in %.1f s)", exc, wait)
                    await self._drop_client()
                else:
                    log.exception("webhook hand-off failed (again in %.1f s)", wait)
                await asyncio.sleep(wait)
                wait = min(wait * 2, _BACKOFF[1])

    async def _say_idle(self) -> None:
        """Put this door on the set of idle ones (at most every _IDLE_EVERY).

        Doors that have not said so for a minute (gone) are forgotten in the same round trip.
        """
        if time.monotonic() - self._said_idle < _IDLE_EVERY:
            return
        pipeline, now = self._pipeline(), self._clock()
        self._listed = True
        self._note_others(
            *await settled(
                [
                    pipeline.send("ZADD", self._idle_key, now, self.name),
                    pipeline.send("ZREMRANGEBYSCORE", self._idle_key, "-inf", now - _IDLE_FORGET),
                    pipeline.send(*self._fresh(now)),
                ]
            )
        )
        self._said_idle = time.monotonic()

    def _note_others(self, *replies: Any) -> None:  # noqa: ANN401 - Redis replies or errors
        """Door.others_idle from the idle set's replies, the last one the fresh doors.

        The set failing (a Redis error, a key of another type) never stops the taking: the
        door then hands nothing off, and whatever was handed off before is still taken.
        """
        failed = next((r for r in replies if isinstance(r, BaseException)), None)
        if failed is not None:
            if not self._idle_failed:  # once, until the set works again
                log.warning(
                    "webhook hand-off: the idle doors unknown, handing off none: %r", failed
                )
            self._idle_failed, self._door.others_idle = True, False
            return
        self._idle_failed = False
        self._door.others_idle = someone_else(replies[-1], self.name)

    def _fresh(self, now: float) -> tuple[str, str, float, str]:
        """The command reading the doors that said they were idle lately."""
        return ("ZRANGEBYSCORE", self._idle_key, now - IDLE_FRESH_SECONDS, "+inf")

    async def _blocking_take(self) -> list[bytes]:
        if self._client is None:
            self._client = self._connect()
        client = self._client
        got: Any = await client.execute_command("BLPOP", self._key, BLOCK_SECONDS)
        if not got:
            return []
        first: bytes = got[1]
        rest: Any = await client.execute_command("LPOP", self._key, BATCH - 1)
        return [first, *(rest or [])]

    async def _drop_client(self) -> None:
        """Close the blocking pop's connection (bounded: see aclose); the next take reconnects."""
        if self._client is not None:
            client, self._client = self._client, None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(aclose(client), _CLOSE_SECONDS)

    async def _deliver(self, entries: list[bytes]) -> int:
        alerts: list[Alert] = []
        for entry in entries:
            try:
                alerts.append(decode(entry)[1])
            except ValueError as exc:
                # Not ours to route (written by something else): the accepting instance's
                # sweep re-routes anything of its own that was lost this way.
                log.error("webhook hand-off: dropped %s", exc)  # noqa: TRY400 - no traceback
        if alerts:
            self._on_taken(len(alerts))
            await self._route(alerts)
        return len(alerts)
