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
from typing import TYPE_CHECKING

from aiohttp import web

from tripline.adapters.redis_io import AutoPipeline, async_redis
from tripline.messages import Priority
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
        self._routing: list[Accepted] = []
        self._routes: set[asyncio.Task[None]] = set()

    async def accept(self, body: bytes) -> Verdict:
        """Check, record and route one alert's body; its verdict.

        Raises redis errors when Redis is away: nothing was recorded that may be answered 202.
        """
        acceptor = self._service.acceptor
        checked = acceptor.check(body, retained=False, source="http")
        verdict = await acceptor.record_async(checked, self._auto_pipeline())
        if isinstance(verdict, Accepted):
            self._route(verdict)
        return verdict

    async def aclose(self) -> None:
        """Wait for the routing in flight, then close the Redis connection."""
        if self._routing:
            self._flush_routes()
        if self._routes:
            await asyncio.gather(*self._routes, return_exceptions=True)
        if self._pipeline is not None:
            await self._pipeline.aclose()
            self._pipeline = None

    def _auto_pipeline(self) -> AutoPipeline:
        if self._pipeline is None:
            conf = self._service.config.redis
            # One connection of its own (the AutoPipeline's), with the sync client's timeout.
            client = async_redis(conf.url, connections=1, socket_timeout=5.0)
            self._pipeline = AutoPipeline(client)
        return self._pipeline

    def _route(self, verdict: Accepted) -> None:
        """Route with the others recorded in this loop iteration (one call, after them all)."""
        self._routing.append(verdict)
        if len(self._routing) == 1:
            asyncio.get_running_loop().call_soon(self._flush_routes)

    def _flush_routes(self) -> None:
        batch, self._routing = self._routing, []
        if not batch:
            return
        batch.sort(key=lambda v: v.alert.priority != Priority.CRITICAL)  # stable: order kept
        task = asyncio.get_running_loop().create_task(
            self._service.route_async([v.alert for v in batch], snapshots(batch))
        )
        self._routes.add(task)
        task.add_done_callback(self._routed)

    def _routed(self, task: asyncio.Task[None]) -> None:
        self._routes.discard(task)
        if task.cancelled():
            return
        if (exc := task.exception()) is not None:
            # Recorded already: the records stay 'accepted' and the resume sweep routes them.
            log.warning("routing webhook alerts failed (the sweep resumes them): %r", exc)
            self._service.stats.count("route_failed")


INTAKE: web.AppKey[Intake] = web.AppKey("intake", Intake)
