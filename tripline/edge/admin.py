"""The admin endpoints (admin token): the do-not-call list, maintenance windows, the pause."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
import redis
from aiohttp import web

from tripline.adapters import dnc
from tripline.adapters.ledger.actions import Author, record_action
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


def admin_refusal(request: web.Request) -> web.Response | None:
    """The 401 of a request without an admin token (None: it has one)."""
    if admin_name(request) is not None:
        return None
    conf = request.app[SERVICE].config.http
    message = (
        "missing or wrong bearer token"
        if conf.admin_token or conf.admin_tokens
        else ("admin endpoints are closed: set TRIPLINE__HTTP__ADMIN_TOKEN")
    )
    return problem_response(
        401,
        "unauthorized",
        [{"field": "Authorization", "reason": Reason.UNAUTHORIZED.value, "message": message}],
    )


def admin_name(request: web.Request) -> str | None:
    """Who the request's admin token names ('admin': the unnamed one); None: no admin token."""
    conf = request.app[SERVICE].config.http
    if conf.admin_token and authorized(request, conf.admin_token):
        return "admin"
    for name, token in sorted(conf.admin_tokens.items()):
        if token and authorized(request, token):
            return name
    return None


def author(request: web.Request) -> Author:
    """The ledger's author of an admin request: the token's name, the peer, the reason given.

    The reason comes from the `X-Tripline-Reason` header (or `?reason=`); the origin is the
    peer's address, with what X-Forwarded-For claims after it (not trusted, recorded).
    """
    why = request.headers.get("X-Tripline-Reason") or request.query.get("reason", "")
    forwarded = request.headers.get("X-Forwarded-For", "")
    origin = f"http:{request.remote or '?'}" + (
        f" (forwarded for {forwarded})" if forwarded else ""
    )
    return Author(who=admin_name(request) or "?", origin=origin, why=why)


def _record(request: web.Request, action: str, **facts: Any) -> None:  # noqa: ANN401
    """Record an admin action in the ledger; a failure is logged, the action stands."""
    service = request.app[SERVICE]
    try:
        record_action(
            service.redis,
            service.keys,
            author(request),
            action=action,
            now=service.clock(),
            **facts,
        )
    except redis.RedisError:
        log.exception("%s by %s took effect but is not in the ledger", action, admin_name(request))


async def dnc_list(request: web.Request) -> web.Response:
    """GET /v1/admin/dnc: the internal do-not-call list."""
    if (refusal := admin_refusal(request)) is not None:
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
    if (refusal := admin_refusal(request)) is not None:
        return refusal
    service = request.app[SERVICE]
    number = request.match_info["number"]
    action = "dnc_add" if change is dnc.add else "dnc_remove"

    def run() -> Any:  # noqa: ANN401
        result = change(service.redis, service.keys, number)
        if result:  # a removal of a number not on the list changed nothing
            _record(request, action, phone=number)
        return result

    try:
        return await asyncio.to_thread(run)
    except dnc.InvalidNumberError as exc:
        return problem_response(
            400,
            "invalid_number",
            [{"field": "number", "reason": "invalid_field", "message": str(exc)}],
        )


async def maintenance_list(request: web.Request) -> web.Response:
    """GET /v1/admin/maintenance: every window, pending, active or ended within a day."""
    if (refusal := admin_refusal(request)) is not None:
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
    if (refusal := admin_refusal(request)) is not None:
        return refusal
    service = request.app[SERVICE]
    try:
        doc = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        problem = {"field": "", "reason": Reason.INVALID_JSON.value, "message": str(exc)}
        return problem_response(400, "invalid_window", [problem])

    name = admin_name(request)
    if isinstance(doc, dict) and not doc.get("createdBy") and name and name != "admin":
        doc["createdBy"] = name  # a named token says who: no need to repeat it

    def add() -> Window | list[Problem]:
        added = maintenance.add(service.redis, service.keys, doc, now=service.clock())
        if isinstance(added, Window):
            service.refresh_controls()  # here at once
            _record(request, "maintenance_opened", subject=added.to_doc(service.clock()))
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
    if (refusal := admin_refusal(request)) is not None:
        return refusal
    service = request.app[SERVICE]
    window_id = request.match_info["id"]

    def end() -> Window | None:
        ended = maintenance.end(service.redis, service.keys, window_id, now=service.clock())
        service.refresh_controls()
        if ended is not None:
            _record(request, "maintenance_ended", subject=ended.to_doc(service.clock()))
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
    if (refusal := admin_refusal(request)) is not None:
        return refusal
    service = request.app[SERVICE]
    name = admin_name(request)
    who = name if name and name != "admin" else "operator"  # the unnamed token: as before

    def change() -> None:
        service.pause_dialing(paused=paused, by=who)
        _record(request, "dialing_paused" if paused else "dialing_resumed")

    try:
        await asyncio.to_thread(change)
    except redis.RedisError:  # the pause is kept in Redis, for every instance
        return problem_response(503, "unavailable", [], {"Retry-After": RETRY_AFTER})
    return json_response({"dialingPaused": paused})
