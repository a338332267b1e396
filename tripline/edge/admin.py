"""The admin endpoints (admin token): the do-not-call list, maintenance windows, the pause."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
import redis
from aiohttp import web

from tripline.adapters import dnc
from tripline.edge.responses import (
    RETRY_AFTER,
    SERVICE,
    authorized,
    json_response,
    problem_response,
)
from tripline.messages import Reason
from tripline.pipeline.maintenance import Window
from tripline.pipeline.validate import Problem
from tripline.service import controls as maintenance

log = logging.getLogger("tripline.edge.http_api")  # one logger for the HTTP edge


def _admin_refusal(request: web.Request) -> web.Response | None:
    token = request.app[SERVICE].config.http.admin_token
    if token and authorized(request, token):
        return None
    message = (
        "missing or wrong bearer token"
        if token
        else ("admin endpoints are closed: set TRIPLINE__HTTP__ADMIN_TOKEN")
    )
    return problem_response(
        401,
        "unauthorized",
        [{"field": "Authorization", "reason": Reason.UNAUTHORIZED.value, "message": message}],
    )


async def dnc_list(request: web.Request) -> web.Response:
    """GET /v1/admin/dnc: the internal do-not-call list."""
    if (refusal := _admin_refusal(request)) is not None:
        return refusal
    service = request.app[SERVICE]
    found = await asyncio.to_thread(dnc.numbers, service.redis, service.keys)
    return json_response({"numbers": found, "count": len(found)})


async def dnc_add(request: web.Request) -> web.Response:
    """PUT /v1/admin/dnc/{number}: never call this number (checked before every call)."""
    result = await _dnc_change(request, dnc.add)
    if isinstance(result, web.Response):
        return result
    return json_response({"number": result, "doNotCall": True})


async def dnc_remove(request: web.Request) -> web.Response:
    """DELETE /v1/admin/dnc/{number}."""
    result = await _dnc_change(request, dnc.remove)
    if isinstance(result, web.Response):
        return result
    if not result:
        return problem_response(
            404,
            "not_found",
            [{"field": "number", "reason": "unknown", "message": "the number is not on the list"}],
        )
    return json_response({"number": request.match_info["number"], "doNotCall": False})


async def _dnc_change(request: web.Request, change: Any) -> Any:  # noqa: ANN401
    """Run an admin change of the DNC list: the refusal or problem as a Response, else its value."""
    if (refusal := _admin_refusal(request)) is not None:
        return refusal
    service = request.app[SERVICE]
    try:
        return await asyncio.to_thread(
            change, service.redis, service.keys, request.match_info["number"]
        )
    except dnc.InvalidNumberError as exc:
        return problem_response(
            400,
            "invalid_number",
            [{"field": "number", "reason": "invalid_field", "message": str(exc)}],
        )


async def maintenance_list(request: web.Request) -> web.Response:
    """GET /v1/admin/maintenance: every window, pending, active or ended within a day."""
    if (refusal := _admin_refusal(request)) is not None:
        return refusal
    service = request.app[SERVICE]
    try:
        windows = await asyncio.to_thread(maintenance.read_all, service.redis, service.keys)
    except redis.RedisError:
        return problem_response(503, "unavailable", [], {"Retry-After": RETRY_AFTER})
    now = service.clock()
    docs = [w.to_doc(now) for w in windows]
    return json_response({"windows": docs, "count": len(docs)})


async def maintenance_add(request: web.Request) -> web.Response:
    """POST /v1/admin/maintenance: the matching alerts place no call while it is open."""
    if (refusal := _admin_refusal(request)) is not None:
        return refusal
    service = request.app[SERVICE]
    try:
        doc = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        problem = {"field": "", "reason": Reason.INVALID_JSON.value, "message": str(exc)}
        return problem_response(400, "invalid_window", [problem])

    def add() -> Window | list[Problem]:
        added = maintenance.add(service.redis, service.keys, doc, now=service.clock())
        if isinstance(added, Window):
            service.refresh_controls()  # here at once
        return added

    try:
        added = await asyncio.to_thread(add)
    except redis.RedisError:
        return problem_response(503, "unavailable", [], {"Retry-After": RETRY_AFTER})
    if not isinstance(added, Window):
        return problem_response(400, "invalid_window", [p.as_json() for p in added])
    log.info("maintenance window %s opened: %s", added.window_id, added.detail())
    return json_response(added.to_doc(service.clock()), 201)


async def maintenance_end(request: web.Request) -> web.Response:
    """DELETE /v1/admin/maintenance/{id}: end a window now (it stays listed for a day)."""
    if (refusal := _admin_refusal(request)) is not None:
        return refusal
    service = request.app[SERVICE]
    window_id = request.match_info["id"]

    def end() -> Window | None:
        ended = maintenance.end(service.redis, service.keys, window_id, now=service.clock())
        service.refresh_controls()
        return ended

    try:
        ended = await asyncio.to_thread(end)
    except redis.RedisError:
        return problem_response(503, "unavailable", [], {"Retry-After": RETRY_AFTER})
    if ended is None:
        problem = {"field": "id", "reason": "unknown", "message": f"no window {window_id!r}"}
        return problem_response(404, "not_found", [problem])
    log.info("maintenance window %s ended", window_id)
    return json_response(ended.to_doc(service.clock()))


async def pause_dialing(request: web.Request) -> web.Response:
    """POST /v1/admin/dialing/pause: hold every call until resumed (tasks go on)."""
    return await _set_pause(request, paused=True)


async def resume_dialing(request: web.Request) -> web.Response:
    """POST /v1/admin/dialing/resume."""
    return await _set_pause(request, paused=False)


async def _set_pause(request: web.Request, *, paused: bool) -> web.Response:
    if (refusal := _admin_refusal(request)) is not None:
        return refusal
    service = request.app[SERVICE]
    try:
        await asyncio.to_thread(service.pause_dialing, paused=paused, by="operator")
    except redis.RedisError:  # the pause is kept in Redis, for every instance
        return problem_response(503, "unavailable", [], {"Retry-After": RETRY_AFTER})
    return json_response({"dialingPaused": paused})
