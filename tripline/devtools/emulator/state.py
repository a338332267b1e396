"""The emulator's state and plumbing: settings, recorded requests, the rate window, errors."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson
from aiohttp import web

from tripline.devtools.emulator.customers import demo_customers
from tripline.devtools.emulator.objects import demo_objects
from tripline.devtools.emulator.outcomes import (
    KINDS,
    PlacedCall,
    check_call_results,
    check_delay,
    default_code,
    planned,
)


@dataclass
class Settings:
    """Knobs a test or the demo turns at run time (PUT /_emulator/settings)."""

    rate_limit_per_minute: int = 300
    """Genesys' default per OAuth client; 0 disables the limit."""
    retry_after_seconds: int = 0
    """Retry-After sent with a 429 (0: the time until the window frees a slot)."""
    latency_ms: int = 0
    """Delay before every contact-center answer."""
    failure_status: int = 0
    """Answer every contact-center request with this status (0: off)."""
    failure_rate: float = 0.0
    """Fraction of contact-center requests answered with failure_status (or 503)."""
    hang_after_receiving: bool = False
    """Accept the callback, then never answer (the ambiguous case)."""
    occupancy: float = 0.5
    """Agent occupancy reported by the queue observations (0-1)."""
    waiting: int = 0
    """Voice interactions waiting in queue."""
    agents_on_queue: int = 10
    """Agents on queue."""
    crm_latency_ms: int = 0
    """Delay before every CRM answer."""
    crm_down: bool = False
    """Answer every CRM request with 503."""
    synthetic_customers: int = 0
    """How many CUST-<n> customers the CRM's list endpoint also pages through."""
    call_results: list[Any] = field(default_factory=list)
    """What the next placed calls turn out to be, one item per call in order: a result
    (answered, no_answer, busy, voicemail, failed) or {"result": ..., "wrapupCode": ...}.
    Consumed as calls are placed; when empty a call is answered."""
    call_result_delay_seconds: float = 2.0
    """How long after a call is placed (or its callback is scheduled) its result shows."""
    wrapup_code: str = "tripline-resolved"
    """The agent's wrap-up code for an answered call whose item names none."""


class Emulator:
    """The state behind the app: customers, recorded requests, settings, rate window."""

    def __init__(self) -> None:
        """Start with the demo customers and default settings."""
        self.customers = demo_customers()
        self.requests: list[dict[str, Any]] = []
        self.settings = Settings()
        self.tokens: set[str] = set()
        self._window: deque[float] = deque()
        self.clock: Callable[[], float] = time.time
        """When calls are placed and their results show (tests may wind it on)."""
        self.calls: dict[str, dict[str, PlacedCall]] = {kind: {} for kind in KINDS}
        """Placed calls by kind, then id (campaign contacts: "<contactListId>/<id>")."""
        self.dispositions: dict[str, int] = {}
        """CXone disposition ids by name, made up as codes are used."""
        self.tasks: set[asyncio.Task[None]] = set()
        """Background sends (Twilio status callbacks), kept so they are not collected."""
        self.objects = demo_objects()
        """Configured objects by kind ('queues', 'worktypes', 'contactlists', 'skills'), then id."""

    def place(
        self,
        kind: str,
        key: str,
        *,
        call_id: str,
        phone: str,
        scheduled: float | None = None,
        extra: dict[str, Any] | None = None,
    ) -> PlacedCall:
        """Place one call: take the next planned result and fix when it shows.

        Args:
            kind: One of outcomes.KINDS.
            key: Its key in `calls[kind]`.
            call_id: The vendor's id for it.
            phone: The number dialled.
            scheduled: A callbackScheduledTime: the result shows that long after it.
            extra: Vendor details kept with it.

        Returns:
            The call, remembered.
        """
        s = self.settings
        result, code = planned(s.call_results.pop(0) if s.call_results else "answered")
        now = self.clock()
        starts = max(now, scheduled) if scheduled is not None else now
        call = PlacedCall(
            id=call_id,
            kind=kind,
            created=now,
            starts=starts,
            visible_at=starts + s.call_result_delay_seconds,
            result=result,
            wrapup_code=code or default_code(kind, result, s.wrapup_code),
            phone=phone,
            extra=extra or {},
        )
        self.calls[kind][key] = call
        return call

    def disposition_id(self, name: str) -> int:
        """CXone's id for a disposition name: made up on first use, stable after."""
        if name not in self.dispositions:
            self.dispositions[name] = 1000 + len(self.dispositions)
        return self.dispositions[name]

    def rate_limited(self, now: float) -> float:
        """Seconds until a slot frees in the one-minute window, or 0 when this request fits."""
        limit = self.settings.rate_limit_per_minute
        while self._window and now - self._window[0] >= 60:
            self._window.popleft()
        if limit and len(self._window) >= limit:
            return 60 - (now - self._window[0])
        self._window.append(now)
        return 0.0


EMULATOR: web.AppKey[Emulator] = web.AppKey("emulator")


def _error(status: int, message: str, code: str) -> web.Response:
    """The Genesys error body."""
    body = {
        "message": message,
        "code": code,
        "status": status,
        "contextId": str(uuid.uuid4()),
        "details": [],
        "errors": [],
    }
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


@web.middleware
async def _record(request: web.Request, handler: Any) -> web.StreamResponse:  # noqa: ANN401
    emulator = request.app[EMULATOR]
    if request.path.startswith("/_emulator"):
        response: web.StreamResponse = await handler(request)
        return response
    raw = await request.read()
    if request.content_type == "application/x-www-form-urlencoded":
        body: Any = dict(await request.post())
    else:
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = raw.decode("utf-8", "replace")
    entry = {
        "method": request.method,
        "path": request.path,
        "rawPath": request.raw_path.partition("?")[0],
        "query": dict(request.query),
        "body": body,
        "at": time.time(),
        "status": 0,
    }
    emulator.requests.append(entry)
    response = await handler(request)
    entry["status"] = response.status
    return response


def _too_many(emulator: Emulator, wait: float) -> web.Response:
    seconds = emulator.settings.retry_after_seconds or max(1, int(wait + 0.999))
    response = _error(
        429,
        f"Rate limit exceeded the maximum. Retry the request in [{seconds}] seconds",
        "too.many.requests.retry.after",
    )
    response.headers["Retry-After"] = str(seconds)
    return response


async def _gate(request: web.Request) -> web.Response | None:
    """What every /api/v2 request goes through: auth, rate limit, latency, failures."""
    emulator = request.app[EMULATOR]
    auth = request.headers.get("Authorization", "")
    if not auth.startswith("Bearer ") or auth[7:] not in emulator.tokens:
        return _error(401, "authentication required", "authentication.required")
    if (wait := emulator.rate_limited(time.time())) > 0:
        return _too_many(emulator, wait)
    s = emulator.settings
    if s.latency_ms:
        await asyncio.sleep(s.latency_ms / 1000)
    if s.failure_status and (s.failure_rate == 0 or random.random() < s.failure_rate):
        return _error(s.failure_status, "emulated failure", "internal.server.error")
    if s.failure_rate and not s.failure_status and random.random() < s.failure_rate:
        return _error(503, "emulated outage", "service.unavailable")
    return None


async def _json_body(request: web.Request) -> Any | web.Response:  # noqa: ANN401
    try:
        return orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return _error(400, "body is not valid JSON", "bad.request")


async def get_requests(request: web.Request) -> web.Response:
    """GET /_emulator/requests: every request received.

    Each is {method, path, rawPath, query, body, status}: `path` decoded, `rawPath` as it
    arrived on the request line (percent-encoded, before the query).
    """
    return web.Response(
        body=orjson.dumps(request.app[EMULATOR].requests), content_type="application/json"
    )


async def delete_requests(request: web.Request) -> web.Response:
    """DELETE /_emulator/requests: forget them."""
    request.app[EMULATOR].requests.clear()
    return web.json_response({"cleared": True})


async def put_settings(request: web.Request) -> web.Response:
    """PUT /_emulator/settings: change knobs; unknown names are refused."""
    body = await _json_body(request)
    if isinstance(body, web.Response) or not isinstance(body, dict):
        return _error(400, "settings must be a JSON object", "bad.request")
    emulator = request.app[EMULATOR]
    current = asdict(emulator.settings)
    unknown = set(body) - set(current)
    if unknown:
        return _error(400, f"unknown settings: {', '.join(sorted(unknown))}", "bad.request")
    for name, value in body.items():
        if type(value) is not type(current[name]) and not (
            isinstance(current[name], float) and isinstance(value, int)
        ):
            return _error(400, f"{name} must be {type(current[name]).__name__}", "bad.request")
    problem = _check_values(body)
    if problem:
        return _error(400, problem, "bad.request")
    emulator.settings = Settings(**{**current, **body})
    return web.json_response(asdict(emulator.settings))


def _check_values(body: dict[str, Any]) -> str:
    """Settings whose type is right but whose value is not."""
    if "call_results" in body:
        problem = check_call_results(body["call_results"])
        if problem:
            return problem
    if "call_result_delay_seconds" in body:
        problem = check_delay(float(body["call_result_delay_seconds"]))
        if problem:
            return problem
    if "wrapup_code" in body and not 0 < len(body["wrapup_code"]) <= 255:
        return "wrapup_code must be 1 to 255 characters"
    return ""


async def get_calls(request: web.Request) -> web.Response:
    """GET /_emulator/calls: every placed call with its planned result, by kind."""
    emulator = request.app[EMULATOR]
    now = emulator.clock()
    body = {
        kind: [call.to_json(now) for call in calls.values()]
        for kind, calls in emulator.calls.items()
    }
    return web.Response(body=orjson.dumps(body), content_type="application/json")
