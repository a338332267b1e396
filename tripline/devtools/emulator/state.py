"""The emulator's state and plumbing: settings, recorded requests, the rate window, errors."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

import orjson
from aiohttp import web

from tripline.devtools.emulator.customers import demo_customers


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


class Emulator:
    """The state behind the app: customers, recorded requests, settings, rate window."""

    def __init__(self) -> None:
        """Start with the demo customers and default settings."""
        self.customers = demo_customers()
        self.requests: list[dict[str, Any]] = []
        self.settings = Settings()
        self.tokens: set[str] = set()
        self._window: deque[float] = deque()

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
    emulator.settings = Settings(**{**current, **body})
    return web.json_response(asdict(emulator.settings))
