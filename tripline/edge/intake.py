"""The webhook's intake, on the HTTP server's event loop: requests in flight share the work.

Each POST is checked where it arrives (one decode, microseconds), then awaits its own commands
on the loop's AutoPipeline: the requests in flight at that moment go to Redis together, in one
round trip, with no thread hop (a group commit, as the MQTT door's micro-batches). The alerts
they accepted are routed together too, at the end of the loop iteration that recorded them: one
tell per shard for the whole group, critical alerts first. A 202 is sent only after the
request's record is in Redis; routing is the sweep's to redo if it fails (README "Nothing lost,
nothing twice").

Measured against one `asyncio.to_thread` hop for the record and another for the route per
request (`python -m bench`, webhook phase; README "Performance").
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import TYPE_CHECKING

from aiohttp import web

from tripline.adapters.redis_clients import AsyncRedis, aclose, async_redis
from tripline.adapters.redis_io import AutoPipeline
from tripline.adapters.store import ACCEPT_LUA
from tripline.edge import handoff
from tripline.messages import Alert, Priority, Snapshot
from tripline.pipeline.prioritise import critical_first
from tripline.service.accept import Accepted, Verdict, snapshots

if TYPE_CHECKING:
    from tripline.supervisor import Service

log = logging.getLogger("tripline.http")


class Intake:
    """Accepts webhook alerts for one event loop: shared round trips, grouped routing."""

    def __init__(self, service: Service) -> None:
        """Nothing connects until the first alert (on the loop that serves it)."""
        self._service = service
        self._pipeline: AutoPipeline | None = None
        self._client: AsyncRedis | None = None
        self._routing: list[Accepted] = []
        self._linger = service.config.http.route_linger_ms / 1000
        self._last_route = -math.inf
        self._now = False  # a hand-off is scheduled for this loop iteration
        self._timer: asyncio.TimerHandle | None = None
        self._routes: set[asyncio.Task[None]] = set()
        self.door = handoff.Door()
        self._handoff = service.config.http.handoff
        self._taker: handoff.Taker | None = None

    def start(self) -> None:
        """Start taking handed-off alerts (on the loop that serves the door)."""
        service = self._service
        conf = service.config.http
        if not conf.handoff:
            return
        self._taker = handoff.Taker(
            key=service.keys.handoff(),
            idle_key=service.keys.handoff_idle(),
            door=self.door,
            pipeline=self._auto_pipeline,
            connect=lambda: async_redis(service.config.redis, connections=1, socket_timeout=5.0),
            route=service.route_async,
            max_wait=conf.handoff_max_wait_ms / 1000,
            clock=service.clock,
            on_taken=service.stats.handoff_in.inc,
        )
        self._taker.start()

    async def accept(self, body: bytes) -> Verdict:
        """Check, record and route one alert's body; its verdict.

        Raises redis errors when Redis is away: nothing was recorded that may be answered 202.
        """
        acceptor = self._service.acceptor
        door = self.door
        door.enter()
        try:
            checked = acceptor.check(body, retained=False, source="http")
            verdict = await acceptor.record_async(checked, self._auto_pipeline())
        finally:
            door.leave(time.monotonic())
        if isinstance(verdict, Accepted):
            self._route(verdict)
        return verdict

    async def aclose(self) -> None:
        """Stop taking, wait for the routing in flight, then close the Redis connection."""
        if self._taker is not None:
            await self._taker.aclose()
        if self._timer is not None:
            self._timer.cancel()
        if self._routing:
            self._flush_routes()
        if self._routes:
            await asyncio.gather(*self._routes, return_exceptions=True)
        if self._pipeline is not None:
            await self._pipeline.aclose()
            self._pipeline = None
        if self._client is not None:  # its pool: a script reloaded after NOSCRIPT used it
            await aclose(self._client)
            self._client = None

    def _auto_pipeline(self) -> AutoPipeline:
        if self._pipeline is None:
            conf = self._service.config.redis
            # One connection of its own (the AutoPipeline's), with the sync client's timeout.
            self._client = client = async_redis(conf, connections=1, socket_timeout=5.0)
            self._pipeline = AutoPipeline(client)
            # Known by its source too: after a Redis restart (NOSCRIPT) it is loaded again.
            self._pipeline.script(ACCEPT_LUA)
        return self._pipeline

    def _route(self, verdict: Accepted) -> None:
        """Hand the alert on with the others accepted meanwhile: at once when idle or critical.

        Under load they wait up to `[http] route_linger_ms` after the last hand-off, as the
        MQTT door's batches do: every stage behind this one pays a fixed cost per batch (a
        Redis round trip, thread hand-offs), which alerts handed on one by one each paid in
        full (~10 ms of CPU per batch besides ~1.2 ms per alert, fitted: docs/operations.md).
        """
        self._routing.append(verdict)
        loop = asyncio.get_running_loop()
        if _critical(verdict):
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if not self._now:
                self._now = True
                loop.call_soon(self._flush_routes)
            return
        if self._now or self._timer is not None:
            return  # a hand-off is scheduled: this alert goes with it
        wait = self._last_route + self._linger - loop.time()
        if wait <= 0:
            self._now = True
            loop.call_soon(self._flush_routes)  # after this iteration's other requests
        else:
            self._timer = loop.call_later(wait, self._flush_routes)

    def _flush_routes(self) -> None:
        self._now, self._timer = False, None
        batch, self._routing = self._routing, []
        busy, self.door.since_flush = self.door.busy(), 0
        if not batch:
            return
        loop = asyncio.get_running_loop()
        self._last_route = loop.time()
        if self._handoff and busy and self.door.others_idle:
            kept = [v for v in batch if not handoff.handable(v.alert)]
            self._hand_off([v.alert for v in batch if handoff.handable(v.alert)])
            batch = kept
        # Critical alerts handed on first, in batches of their own: each stage's inbox lets
        # those pass what waits there (the critical lane, actors/_inbox.py).
        for part in critical_first(batch, _critical, _sensor):
            if part:
                self._route_here([v.alert for v in part], snapshots(part))

    def _route_here(self, alerts: list[Alert], found: dict[str, Snapshot] | None = None) -> None:
        task = asyncio.get_running_loop().create_task(self._service.route_async(alerts, found))
        self._routes.add(task)
        task.add_done_callback(self._routed)

    def _hand_off(self, alerts: list[Alert]) -> None:
        """Push accepted alerts to the hand-off list, riding the next requests' round trip.

        Nothing waits for it. If the push fails they are routed here, as without a hand-off.
        """
        if not alerts:
            return
        entries = handoff.encode(alerts, self._service.clock())
        sent = self._auto_pipeline().send("RPUSH", self._service.keys.handoff(), *entries)

        def pushed(future: asyncio.Future[object]) -> None:
            # Counted once in the list: `_in_total` of every taker adds up to this.
            error = "cancelled" if future.cancelled() else future.exception()
            if error is None:
                self._service.stats.handoff_out.inc(len(alerts))
                return
            log.warning("webhook hand-off failed, routed here: %r", error)
            self._route_here(alerts)

        sent.add_done_callback(pushed)

    def _routed(self, task: asyncio.Task[None]) -> None:
        self._routes.discard(task)
        if task.cancelled():
            return
        if (exc := task.exception()) is not None:
            # Recorded already: the records stay 'accepted' and the resume sweep routes them.
            log.warning("routing webhook alerts failed (the sweep resumes them): %r", exc)
            self._service.stats.count("route_failed")


def _critical(verdict: Accepted) -> bool:
    return verdict.alert.priority == Priority.CRITICAL


def _sensor(verdict: Accepted) -> str:
    return verdict.alert.sensor_id


INTAKE: web.AppKey[Intake] = web.AppKey("intake", Intake)
