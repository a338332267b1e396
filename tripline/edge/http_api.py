"""The supervisor's HTTP face: the webhook, records, context, health, status and metrics."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import orjson
import redis
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from tripline.adapters.store import decode_record
from tripline.edge import agent_view, http_guard, openapi
from tripline.edge.admin import (
    dnc_add,
    dnc_list,
    dnc_remove,
    maintenance_add,
    maintenance_end,
    maintenance_list,
    pause_dialing,
    resume_dialing,
)
from tripline.edge.intake import INTAKE, Intake
from tripline.edge.ledger_api import ledger_query
from tripline.edge.providers import twilio_status_callback
from tripline.edge.responses import (
    RETRY_AFTER,
    SERVICE,
    authorized,
    json_response,
    problem_response,
    unauthorized,
)
from tripline.edge.siblings import FLEET
from tripline.messages import Outcome, Reason
from tripline.pipeline import signature
from tripline.pipeline.validate import Problem, Rejected
from tripline.service.accept import Accepted, Conflict, Duplicate, Verdict

if TYPE_CHECKING:
    from tripline.supervisor import Service

log = logging.getLogger(__name__)

_BODY_TIMEOUT_SECONDS = 10.0
"""How long a webhook body may take to arrive: a client that stops sending holds no more."""


def build_app(service: Service) -> web.Application:
    """The aiohttp application serving every HTTP contract (docs/architecture.md)."""
    app = web.Application(client_max_size=service.config.http.max_body_bytes + 1024)
    app[SERVICE] = service
    app[INTAKE] = intake = Intake(service)

    async def start_intake(_app: web.Application) -> None:
        intake.start()

    async def close_intake(_app: web.Application) -> None:
        await intake.aclose()

    app.on_startup.append(start_intake)
    app.on_cleanup.append(close_intake)
    conf = service.config.http
    http_guard.install(
        app,
        allowed_origins=conf.allowed_origins,
        frame_ancestors=conf.frame_ancestors,
        agent_path="/v1/context/",
    )
    if not conf.read_token and not _loopback(conf.host):
        log.warning(
            "HTTP on %s without a read token: /status and the records are open to anyone "
            "who can reach it (set TRIPLINE__HTTP__READ_TOKEN)",
            conf.host,
        )
    app.add_routes(
        [
            web.post("/v1/alerts", post_alert),
            web.get("/v1/alerts/{key:[^/]+}", get_alert),  # any id, braces too (%-encoded)
            web.get("/v1/context/{ref}", get_context),
            web.get("/v1/ledger", ledger_query),
            web.get("/v1/admin/dnc", dnc_list),
            web.put("/v1/admin/dnc/{number}", dnc_add),
            web.delete("/v1/admin/dnc/{number}", dnc_remove),
            web.get("/v1/admin/maintenance", maintenance_list),
            web.post("/v1/admin/maintenance", maintenance_add),
            web.delete("/v1/admin/maintenance/{id}", maintenance_end),
            web.post("/v1/admin/dialing/pause", pause_dialing),
            web.post("/v1/admin/dialing/resume", resume_dialing),
            web.post("/v1/providers/twilio/status", twilio_status_callback),
            web.get("/", dashboard),
            web.get("/openapi.json", openapi_document),
            web.get("/healthz", healthz),
            web.get("/readyz", readyz),
            web.get("/status", status),
            web.get("/metrics", metrics),
        ]
    )
    return app


def _loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _read_refusal(request: web.Request, *, in_query: bool = False) -> web.Response | None:
    """None when [http] read_token is unset or given (`in_query`: also as ?token=)."""
    token = request.app[SERVICE].config.http.read_token
    if not token or authorized(request, token):
        return None
    if in_query and signature.token_matches(request.query.get("token", ""), token):
        return None
    return unauthorized("missing or wrong bearer token (the read token)")


def _webhook_refusal(request: web.Request, body: bytes) -> dict[str, str] | None:
    """None when the webhook may pass: a good bearer token or a good signature, if either is set.

    The body is read (bounded) first because the signature covers it.
    """
    service = request.app[SERVICE]
    conf = service.config.http
    if not conf.webhook_token and not conf.webhook_hmac_secret:
        return None
    if conf.webhook_token and authorized(request, conf.webhook_token):
        return None
    if conf.webhook_hmac_secret:
        stamps = request.headers.getall(signature.TIMESTAMP_HEADER, [])
        signatures = request.headers.getall(signature.SIGNATURE_HEADER, [])
        problem = (
            signature.verify(
                conf.webhook_hmac_secret,
                timestamp=stamps[0] if stamps else None,
                signature=signatures[0] if signatures else None,
                body=body,
                now=service.clock(),
                max_skew=conf.webhook_max_skew_seconds,
            )
            if len(stamps) < 2 and len(signatures) < 2
            else "repeated signature headers"
        )
        if problem is None:
            return None
        return {
            "field": signature.SIGNATURE_HEADER,
            "reason": Reason.UNAUTHORIZED.value,
            "message": problem,
        }
    return {
        "field": "Authorization",
        "reason": Reason.UNAUTHORIZED.value,
        "message": "missing or wrong bearer token",
    }


async def post_alert(request: web.Request) -> web.Response:
    """POST /v1/alerts: 202, 200 duplicate, 400/401/403/408/409/413/415, 503 without Redis."""
    service = request.app[SERVICE]
    conf = service.config.http
    body = await _read_body(request, conf.max_body_bytes)
    if isinstance(body, web.Response):
        return body
    if (refusal := _webhook_refusal(request, body)) is not None:
        service.stats.refused(Outcome.REJECTED, Reason.UNAUTHORIZED, detail=refusal["message"])
        return problem_response(401, "unauthorized", [refusal])
    try:
        verdict = await request.app[INTAKE].accept(body)
    except redis.RedisError:
        return problem_response(
            503,
            "unavailable",
            [{"field": "", "reason": "unavailable", "message": "cannot record alerts right now"}],
            {"Retry-After": RETRY_AFTER},
        )
    if not isinstance(verdict, Accepted):
        return _refused(verdict)
    key = verdict.alert.idempotency_key
    return json_response(
        {
            "idempotencyKey": key,
            "status": "accepted",
            "referenceId": verdict.alert.reference_id,
            "links": {"record": _record_link(key)},
        },
        202,
    )


def _record_link(key: str) -> str:
    """Where the record of `key` is read: the key as one percent-encoded path segment."""
    return "/v1/alerts/" + quote(key, safe="")


def _refused(verdict: Verdict) -> web.Response:
    """The answer to an alert that was not accepted: 400, 409 or 200 duplicate."""
    if isinstance(verdict, Rejected):
        return problem_response(400, "invalid_alert", [p.as_json() for p in verdict.problems])
    if isinstance(verdict, Conflict):
        # Not a duplicate: the sender reused a key for another alert, which was not recorded.
        return problem_response(409, "conflict", verdict.as_problems())
    assert isinstance(verdict, Duplicate)  # noqa: S101 - the four verdicts are exhaustive
    return json_response(
        {
            "idempotencyKey": verdict.idempotency_key,
            "status": "duplicate",
            "links": {"record": _record_link(verdict.idempotency_key)},
        }
    )


def _not_json(request: web.Request) -> web.Response | None:
    """A 415 unless the body is declared JSON in UTF-8, else None.

    A web page's form or text/plain POST is not an alert (and needs no CORS preflight, so any
    page could make a browser send one).
    """
    charset = (request.charset or "utf-8").lower()
    if request.content_type == "application/json" and charset in ("utf-8", "utf8"):
        return None
    given = request.headers.get("Content-Type", "")
    shown = given.encode("ascii", "backslashreplace").decode()[:100] or "none"
    detail = f"Content-Type must be application/json (UTF-8), not {shown}"
    request.app[SERVICE].stats.refused(Outcome.REJECTED, Reason.INVALID_JSON, detail=detail)
    problem = {"field": "Content-Type", "reason": "unsupported_media_type", "message": detail}
    return problem_response(415, "unsupported_media_type", [problem])


async def _read_body(request: web.Request, limit: int) -> bytes | web.Response:
    """The whole JSON body, or the answer when it is not JSON, too large, cut short or slow.

    `request.content.read(n)` returns what has arrived so far, not n bytes: read once, a body
    in two TCP segments would be cut, and one shorter than its Content-Length taken as whole.
    """
    if (refused := _not_json(request)) is not None:
        return refused
    stats = request.app[SERVICE].stats

    def too_large() -> web.Response:
        stats.refused(Outcome.REJECTED, Reason.TOO_LARGE, detail="body too large")
        problem = Problem("", Reason.TOO_LARGE, f"body exceeds {limit} bytes")
        return problem_response(413, "too_large", [problem.as_json()])

    declared = request.content_length
    if declared is not None and declared > limit:
        return too_large()  # refused before a byte of it is read
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(_BODY_TIMEOUT_SECONDS):
            async for chunk in request.content.iter_any():
                size += len(chunk)
                if size > limit:  # chunked: no Content-Length to refuse early
                    return too_large()
                chunks.append(chunk)
    except TimeoutError:
        detail = f"the body did not arrive within {_BODY_TIMEOUT_SECONDS:g} s"
        stats.refused(Outcome.REJECTED, Reason.INVALID_JSON, detail=detail)
        return problem_response(
            408, "timeout", [{"field": "", "reason": "timeout", "message": detail}]
        )
    except (ConnectionResetError, web.RequestPayloadError):
        size = -1  # the client went away or broke the framing: nobody reads an answer
    if size < 0 or (declared is not None and size != declared):
        detail = f"the body ended before its Content-Length ({declared} bytes)"
        stats.refused(Outcome.REJECTED, Reason.INVALID_JSON, detail=detail)
        return problem_response(
            400, "invalid_alert", [Problem("", Reason.INVALID_JSON, detail).as_json()]
        )
    return b"".join(chunks)


async def get_alert(request: web.Request) -> web.Response:
    """GET /v1/alerts/{key}: the record with its history, or 404 (read token)."""
    if (refusal := _read_refusal(request)) is not None:
        return refusal
    service = request.app[SERVICE]
    key = request.match_info["key"]

    def read() -> tuple[dict[bytes, bytes], list[bytes]]:
        pipe = service.redis.pipeline(transaction=False)
        pipe.hgetall(service.keys.record(key))
        pipe.lrange(service.keys.history(key), 0, -1)
        raw, history = pipe.execute()
        return raw, history

    try:
        raw, history = await asyncio.to_thread(read)
    except redis.RedisError:
        return problem_response(503, "unavailable", [], {"Retry-After": RETRY_AFTER})
    if not raw:
        # The record expired ([redis] record_ttl_seconds): what the ledger proves of it.
        if (proved := await _from_ledger(service, key)) is not None:
            return json_response(proved)
        return problem_response(
            404,
            "not_found",
            [{"field": "idempotencyKey", "reason": "unknown", "message": f"no record for {key!r}"}],
        )
    return json_response(decode_record(raw, history))


async def _from_ledger(service: Service, key: str) -> dict[str, Any] | None:
    reader = service.ledger_reader
    if reader is None:
        return None
    try:
        return await asyncio.to_thread(reader.alert, key)
    except Exception:
        log.warning("ledger not reachable for %r", key, exc_info=True)
        return None


async def get_context(request: web.Request) -> web.Response:
    """GET /v1/context/{ref}: the stored alert and full telemetry (token-protected).

    JSON by default; with `Accept: text/html` the agent's page, made for an agent-desktop
    iframe. An iframe cannot send headers, so the token may also come as `?token=`.
    """
    service = request.app[SERVICE]
    token = service.config.http.context_token
    given = request.query.get("token", "")
    if not token or not (authorized(request, token) or signature.token_matches(given, token)):
        return problem_response(
            401,
            "unauthorized",
            [
                {
                    "field": "Authorization",
                    "reason": Reason.UNAUTHORIZED.value,
                    "message": "missing or wrong bearer token"
                    if token
                    else "context endpoint is closed: set TRIPLINE__HTTP__CONTEXT_TOKEN",
                }
            ],
        )
    ref = request.match_info["ref"]
    as_html = _prefers_html(request)
    try:
        found = await asyncio.to_thread(_read_context, service, ref, as_html)
    except redis.RedisError:
        return problem_response(503, "unavailable", [], {"Retry-After": RETRY_AFTER})
    if found is None:
        return problem_response(
            404,
            "not_found",
            [{"field": "referenceId", "reason": "unknown", "message": f"no context for {ref!r}"}],
        )
    if as_html:
        page = agent_view.render(reference_id=ref, now=service.clock(), **found)
        policy = http_guard.page_policy(
            style=agent_view.STYLE, frame_ancestors=service.config.http.frame_ancestors
        )
        return web.Response(
            text=page,
            content_type="text/html",
            headers={
                "Cache-Control": "no-store",
                "Referrer-Policy": "no-referrer",
                http_guard.CSP: policy,
            },
        )
    # Alerts of the same customer that were grouped into this call, in the order they joined.
    return json_response(
        {"referenceId": ref, "alert": found["alert"], "groupedAlerts": found["grouped"]}
    )


def _prefers_html(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "")
    return "text/html" in accept and "application/json" not in accept.split(",")[0]


def _read_context(service: Service, ref: str, full: bool) -> dict[str, Any] | None:
    """The stored alert and its grouped alerts; for the page also record, readings, customer."""
    keys = service.keys
    pipe = service.redis.pipeline(transaction=False)
    pipe.get(keys.context(ref))
    pipe.lrange(keys.siblings(ref), 0, -1)
    blob, siblings = pipe.execute()
    if blob is None:
        return None
    alert = orjson.loads(blob)
    found: dict[str, Any] = {"alert": alert, "grouped": [orjson.loads(s) for s in siblings]}
    if not full:
        return found
    key, sensor, customer = (
        str(alert.get(f, "")) for f in ("idempotencyKey", "sensorId", "customerId")
    )
    pipe = service.redis.pipeline(transaction=False)
    pipe.hgetall(keys.record(key))
    pipe.lrange(keys.history(key), 0, -1)
    pipe.lrange(keys.readings(customer, sensor), 0, -1)
    pipe.get(keys.customer(customer))
    raw, history, readings, profile = pipe.execute()
    found["record"] = decode_record(raw, history) if raw else None
    found["readings"] = [orjson.loads(r) for r in readings]
    found["customer"] = orjson.loads(profile) if profile else None
    return found


_DASHBOARD = resources.files("tripline.edge").joinpath("web/dashboard.html")


async def dashboard(request: web.Request) -> web.Response:
    """GET /: the operators' dashboard, one static page that polls /status.

    With a read token, the token may come as ?token= (an address bar cannot send a header).
    """
    if (refusal := _read_refusal(request, in_query=True)) is not None:
        return refusal
    page = _DASHBOARD.read_text("utf-8")
    policy = http_guard.page_policy(
        style=http_guard.inline_block(page, "style"),
        script=http_guard.inline_block(page, "script"),
    )
    return web.Response(
        text=page,
        content_type="text/html",
        headers={
            "Cache-Control": "no-store",
            "X-Frame-Options": "DENY",
            "Referrer-Policy": "no-referrer",  # the address may carry ?token=
            http_guard.CSP: policy,
        },
    )


async def openapi_document(_request: web.Request) -> web.Response:
    """GET /openapi.json."""
    return json_response(openapi.document())


async def healthz(request: web.Request) -> web.Response:
    """GET /healthz: alive, and no actor beyond its restart budget; the ledger's lag.

    A lagging ledger is reported, not failed: restarting the service would not bring the
    ledger's store back, and would stop calls meanwhile (its entries wait in Redis).
    """
    service = request.app[SERVICE]
    healthy = service.healthy
    doc = {"alive": True, "healthy": healthy, "ledger": service.ledger_status()}
    return json_response(doc, 200 if healthy else 503)


async def readyz(request: web.Request) -> web.Response:
    """GET /readyz: Redis answers and the broker connection is up."""
    service = request.app[SERVICE]
    try:
        redis_ok = bool(await asyncio.to_thread(service.redis.ping))
    except redis.RedisError:
        redis_ok = False
    broker_ok = await asyncio.to_thread(service.broker_connected)
    ready = redis_ok and broker_ok
    return json_response(
        {"ready": ready, "redis": redis_ok, "broker": broker_ok}, 200 if ready else 503
    )


async def status(request: web.Request) -> web.Response:
    """GET /status: actors, counters by outcome and reason, queue depth, rate budget."""
    if (refusal := _read_refusal(request)) is not None:
        return refusal
    doc = await asyncio.to_thread(request.app[SERVICE].status)
    if (fleet := request.app.get(FLEET)) is not None:  # `tripline run --workers N`: all of them
        doc = await fleet.status(request, doc)
    return json_response(doc)


async def metrics(request: web.Request) -> web.Response:
    """GET /metrics in the Prometheus text format."""
    service = request.app[SERVICE]
    await asyncio.to_thread(service.refresh_gauges)
    body = generate_latest(service.stats.registry)
    if (fleet := request.app.get(FLEET)) is not None:  # `tripline run --workers N`: all of them
        body = await fleet.metrics(request, body)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
