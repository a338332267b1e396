"""`tripline emulate`: a local Genesys Cloud + CRM with the real paths, fields, OAuth and 429s."""

from __future__ import annotations

import asyncio
import base64
import random
import re
import time
import uuid
from collections import deque
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from aiohttp import web

CLIENT_ID, CLIENT_SECRET = "tripline-demo", "demo-secret"
TOKEN_SECONDS = 86400
ATTRIBUTE_MAX = 255

# Zones three to five hours apart: whenever the demo runs, some customers are inside 08-20 local.
_ZONES = (
    "Pacific/Auckland",
    "Asia/Tokyo",
    "Asia/Kolkata",
    "Europe/Berlin",
    "Europe/London",
    "America/Sao_Paulo",
    "America/New_York",
    "America/Los_Angeles",
)
_PHONES = (
    "+6493091234",
    "+81312345678",
    "+919876543210",
    "+493012345678",
    "+442079460123",
    "+5511912345678",
    "+12125550199",
    "+14155550100",
)
_SYNTHETIC = re.compile(r"^CUST-(\d{1,9})$")


_COUNTRIES = ("NZ", "JP", "IN", "DE", "GB", "BR", "US", "US")
_REGIONS = ("", "", "", "", "", "", "US-NY", "US-CA")


def _customer(
    cid: str,
    name: str,
    phone: str,
    zone: str,
    *,
    country: str = "US",
    region: str = "",
    **flags: bool,
) -> dict[str, Any]:
    return {
        "id": cid,
        "name": name,
        "phone": phone,
        "timezone": zone,
        "country": country,
        "region": region,
        "doNotDisturb": flags.get("dnd", False),
        "doNotCall": flags.get("dnc", False),
        "callConsent": True,
    }


def demo_customers() -> dict[str, dict[str, Any]]:
    """The shipped customers: eight callable ones around the globe, and four that are not."""
    out = {}
    for n, (zone, phone) in enumerate(zip(_ZONES, _PHONES, strict=True), 1):
        out[f"CUST-DEMO-{n}"] = _customer(
            f"CUST-DEMO-{n}",
            f"Demo Site {n}",
            phone,
            zone,
            country=_COUNTRIES[n - 1],
            region=_REGIONS[n - 1],
        )
    out["CUST-DNC"] = _customer(
        "CUST-DNC", "Do Not Call Ltd", "+12015550123", "America/New_York", region="US-NJ", dnc=True
    )
    out["CUST-DND"] = _customer(
        "CUST-DND", "Quiet Hours Inc", "+12015550199", "America/New_York", region="US-NJ", dnd=True
    )
    out["CUST-NOPHONE"] = _customer(
        "CUST-NOPHONE", "No Phone Co", "", "Europe/London", country="GB"
    )
    out["CUST-BADPHONE"] = _customer(
        "CUST-BADPHONE", "Bad Phone Co", "+15551234567", "America/Chicago", region="US-IL"
    )
    return out


def synthetic_customer(customer_id: str) -> dict[str, Any] | None:
    """Customers CUST-<n> of a simulated fleet: phone and zone derived from n."""
    match = _SYNTHETIC.match(customer_id)
    if match is None:
        return None
    n = int(match.group(1))
    k = n % len(_ZONES)
    return _customer(
        customer_id,
        f"Fleet Customer {n}",
        _PHONES[k],
        _ZONES[k],
        country=_COUNTRIES[k],
        region=_REGIONS[k],
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


async def token(request: web.Request) -> web.Response:
    """POST /oauth/token: client credentials with HTTP Basic."""
    emulator = request.app[EMULATOR]
    if (wait := emulator.rate_limited(time.time())) > 0:
        return _too_many(emulator, wait)
    expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    form = await request.post()
    if request.headers.get("Authorization") != expected:
        return _error(401, "invalid client credentials", "bad.credentials")
    if form.get("grant_type") != "client_credentials":
        return _error(400, "grant_type must be client_credentials", "bad.request")
    access = uuid.uuid4().hex
    emulator.tokens.add(access)
    return web.json_response(
        {"access_token": access, "token_type": "bearer", "expires_in": TOKEN_SECONDS}
    )


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


async def callbacks(request: web.Request) -> web.Response:
    """POST /api/v2/conversations/callbacks (CreateCallbackCommand)."""
    if (gate := await _gate(request)) is not None:
        return gate
    body = await _json_body(request)
    if isinstance(body, web.Response):
        return body
    problem = _check_callback(body)
    if problem:
        return _error(400, problem, "bad.request")
    # The callback "exists" but its answer never comes, until the knob is turned off again.
    while request.app[EMULATOR].settings.hang_after_receiving:  # noqa: ASYNC110 - a knob, no event
        await asyncio.sleep(0.1)
    cid = str(uuid.uuid4())
    return web.json_response(
        {
            "conversation": {"id": cid, "selfUri": f"/api/v2/conversations/{cid}"},
            "callbackIdentifiers": [{"type": "EXTERNAL", "id": str(uuid.uuid4())}],
        }
    )


def _check_callback(body: Any) -> str:  # noqa: ANN401, PLR0911
    if not isinstance(body, dict):
        return "body must be an object"
    numbers = body.get("callbackNumbers")
    if (
        not isinstance(numbers, list)
        or not numbers
        or not all(isinstance(n, str) and n for n in numbers)
    ):
        return "callbackNumbers is required: a non-empty list of strings"
    routing = body.get("routingData") or {}
    if not isinstance(routing, dict):
        return "routingData must be an object"
    if not (body.get("queueId") or routing.get("queueId")):
        return "queueId or routingData.queueId is required"
    if "priority" in routing and not isinstance(routing["priority"], int):
        return "routingData.priority must be an integer"
    data = body.get("data", {})
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        return "data must map strings to strings"
    for key, value in data.items():
        if len(value) > ATTRIBUTE_MAX:
            return f"data.{key} exceeds {ATTRIBUTE_MAX} characters"
    return ""


async def workitems(request: web.Request) -> web.Response:
    """POST /api/v2/taskmanagement/workitems (WorkitemCreate field rules)."""
    if (gate := await _gate(request)) is not None:
        return gate
    body = await _json_body(request)
    if isinstance(body, web.Response):
        return body
    problem = _check_workitem(body)
    if problem:
        return _error(400, problem, "bad.request")
    return web.json_response(
        {"id": str(uuid.uuid4()), **body, "dateCreated": datetime.now().astimezone().isoformat()}
    )


def _check_workitem(body: Any) -> str:  # noqa: ANN401
    if not isinstance(body, dict):
        return "body must be an object"
    return _check_workitem_fields(body) or _check_workitem_dates(body)


def _check_workitem_fields(body: dict[str, Any]) -> str:
    name = body.get("name")
    if not isinstance(name, str) or not 3 <= len(name) <= 256:
        return "name is required: 3 to 256 characters"
    if not isinstance(body.get("typeId"), str) or not body["typeId"]:
        return "typeId is required"
    description = body.get("description", "")
    if not isinstance(description, str) or len(description) > 512:
        return "description must be at most 512 characters"
    priority = body.get("priority", 0)
    if not isinstance(priority, int) or not -25_000_000 <= priority <= 25_000_000:
        return "priority must be an integer within +-25,000,000"
    return ""


def _check_workitem_dates(body: dict[str, Any]) -> str:
    for name_ in ("dateDue", "dateExpires"):
        if name_ in body:
            try:
                due = datetime.fromisoformat(body[name_])
            except (TypeError, ValueError):
                return f"{name_} must be ISO-8601"
            if due.tzinfo is None:
                return f"{name_} must carry a zone"
            if due - datetime.now().astimezone() > timedelta(days=365):
                return f"{name_} must be within 365 days"
    return ""


async def contacts(request: web.Request) -> web.Response:
    """POST /api/v2/outbound/contactlists/{contactListId}/contacts."""
    if (gate := await _gate(request)) is not None:
        return gate
    body = await _json_body(request)
    if isinstance(body, web.Response):
        return body
    list_id = request.match_info["contactListId"]
    if not isinstance(body, list) or not body:
        return _error(400, "body must be a non-empty list of contacts", "bad.request")
    out = []
    for contact in body:
        if not isinstance(contact, dict) or not isinstance(contact.get("data"), dict):
            return _error(400, "every contact needs a data object", "bad.request")
        out.append(
            {
                "id": contact.get("id") or uuid.uuid4().hex,
                "contactListId": list_id,
                "data": contact["data"],
                "callable": contact.get("callable", True),
            }
        )
    return web.json_response(out)


async def observations(request: web.Request) -> web.Response:  # noqa: PLR0911
    """POST /api/v2/analytics/queues/observations/query: occupancy from the settings."""
    if (gate := await _gate(request)) is not None:
        return gate
    body = await _json_body(request)
    if isinstance(body, web.Response):
        return body
    if not isinstance(body, dict) or not isinstance(body.get("filter"), dict):
        return _error(400, "filter is required", "bad.request")
    if not isinstance(body.get("metrics"), list) or not body["metrics"]:
        return _error(400, "metrics is required", "bad.request")
    s = request.app[EMULATOR].settings
    predicates = body["filter"].get("predicates", [])
    for predicate in predicates:
        if not isinstance(predicate, dict) or not predicate.get("dimension"):
            return _error(400, "every predicate needs a dimension", "bad.request")
        if predicate.get("operator", "matches") == "matches" and not predicate.get("value"):
            return _error(400, "a matches predicate needs a value", "bad.request")
    queues = [p["value"] for p in predicates if p.get("dimension") == "queueId"]
    interacting = round(s.agents_on_queue * s.occupancy)
    results = []
    for queue in queues:
        results.append(
            {
                "group": {"queueId": queue},
                "data": [
                    {
                        "metric": "oOnQueueUsers",
                        "qualifier": "IDLE",
                        "stats": {"count": s.agents_on_queue - interacting},
                    },
                    {
                        "metric": "oOnQueueUsers",
                        "qualifier": "INTERACTING",
                        "stats": {"count": interacting},
                    },
                ],
            }
        )
        results.append(
            {
                "group": {"queueId": queue, "mediaType": "voice"},
                "data": [
                    {"metric": "oWaiting", "stats": {"count": s.waiting}},
                    {"metric": "oInteracting", "stats": {"count": interacting}},
                ],
            }
        )
    return web.json_response({"systemToOrganizationMappings": {}, "results": results})


async def crm_customer(request: web.Request) -> web.Response:
    """GET /api/v1/customers/{id}: the CRM."""
    emulator = request.app[EMULATOR]
    if emulator.settings.crm_latency_ms:
        await asyncio.sleep(emulator.settings.crm_latency_ms / 1000)
    if emulator.settings.crm_down:
        return _error(503, "CRM unavailable", "service.unavailable")
    cid = request.match_info["id"]
    customer = emulator.customers.get(cid) or synthetic_customer(cid)
    if customer is None:
        return _error(404, f"customer {cid} not found", "not.found")
    return web.json_response(customer)


async def crm_list(request: web.Request) -> web.Response:
    """GET /api/v1/customers?page=N&pageSize=M: the paginated list the cache is warmed from."""
    emulator = request.app[EMULATOR]
    if emulator.settings.crm_latency_ms:
        await asyncio.sleep(emulator.settings.crm_latency_ms / 1000)
    if emulator.settings.crm_down:
        return _error(503, "CRM unavailable", "service.unavailable")
    try:
        page = int(request.query.get("page", "1"))
        size = int(request.query.get("pageSize", "100"))
    except ValueError:
        return _error(400, "page and pageSize must be integers", "bad.request")
    if page < 1 or not 1 <= size <= 1000:
        return _error(400, "page >= 1 and 1 <= pageSize <= 1000", "bad.request")
    ids = list(emulator.customers) + [
        f"CUST-{n}" for n in range(emulator.settings.synthetic_customers)
    ]
    chunk = ids[(page - 1) * size : page * size]
    items = [emulator.customers.get(c) or synthetic_customer(c) for c in chunk]
    more = page * size < len(ids)
    return web.json_response(
        {
            "items": items,
            "page": page,
            "pageSize": size,
            "total": len(ids),
            "nextPage": page + 1 if more else None,
        }
    )


async def put_customer(request: web.Request) -> web.Response:
    """PUT /_emulator/customers/{id}: add or replace a CRM customer."""
    body = await _json_body(request)
    if isinstance(body, web.Response) or not isinstance(body, dict):
        return _error(400, "customer must be a JSON object", "bad.request")
    cid = request.match_info["id"]
    request.app[EMULATOR].customers[cid] = {**body, "id": cid}
    return web.json_response(request.app[EMULATOR].customers[cid])


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


# --- NICE CXone ----------------------------------------------------------------------------

CXONE_KEY, CXONE_KEY_SECRET = "tripline-demo-key", "demo-key-secret"
CXONE_APP, CXONE_APP_SECRET = "tripline-demo-app", "demo-app-secret"
CXONE_TENANT = "11111111-2222-3333-4444-555555555555"


def _origin(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


async def cxone_openid(request: web.Request) -> web.Response:
    """GET /.well-known/openid-configuration: where to get a token."""
    return web.json_response(
        {"issuer": _origin(request), "token_endpoint": f"{_origin(request)}/auth/token"}
    )


async def cxone_token(request: web.Request) -> web.Response:
    """POST /auth/token: the password grant with an access key."""
    emulator = request.app[EMULATOR]
    if (wait := emulator.rate_limited(time.time())) > 0:
        return _too_many(emulator, wait)
    form = await request.post()
    expected = {
        "grant_type": "password",
        "username": CXONE_KEY,
        "password": CXONE_KEY_SECRET,
        "client_id": CXONE_APP,
        "client_secret": CXONE_APP_SECRET,
    }
    if any(form.get(k) != v for k, v in expected.items()):
        return _error(401, "invalid access key or client", "invalid_grant")
    access = uuid.uuid4().hex
    emulator.tokens.add(access)
    claims = base64.urlsafe_b64encode(orjson.dumps({"tenantId": CXONE_TENANT})).decode()
    return web.json_response(
        {
            "access_token": access,
            "token_type": "bearer",
            "expires_in": 3600,
            "id_token": f"e30.{claims.rstrip('=')}.sig",
        }
    )


async def cxone_configuration(request: web.Request) -> web.Response:
    """GET /.well-known/cxone-configuration?tenantId=…: the tenant's API endpoint."""
    if request.query.get("tenantId") != CXONE_TENANT:
        return _error(404, "unknown tenant", "not.found")
    return web.json_response({"api_endpoint": _origin(request), "area": "emulator"})


async def cxone_script_start(request: web.Request) -> web.Response:
    """POST /incontactapi/services/{v}/scripts/{scriptId}/start {skillId, parameters}."""
    if (gate := await _gate(request)) is not None:
        return gate
    body = await _json_body(request)
    if isinstance(body, web.Response):
        return body
    if not isinstance(body, dict) or not body.get("skillId"):
        return _error(400, "skillId is required", "bad.request")
    if not isinstance(body.get("parameters", ""), str):
        return _error(400, "parameters must be a pipe-delimited string", "bad.request")
    return web.json_response({"contactId": random.randint(10**9, 10**10)}, status=202)


async def cxone_skill_activity(request: web.Request) -> web.Response:
    """GET /incontactapi/services/{v}/skills/{skillId}/activity."""
    if (gate := await _gate(request)) is not None:
        return gate
    s = request.app[EMULATOR].settings
    working = round(s.agents_on_queue * s.occupancy)
    return web.json_response(
        {
            "skillActivity": [
                {
                    "skillId": request.match_info["skillId"],
                    "queueCount": s.waiting,
                    "agentsLoggedIn": s.agents_on_queue,
                    "agentsAvailable": s.agents_on_queue - working,
                    "agentsWorking": working,
                }
            ]
        }
    )


# --- Twilio ---------------------------------------------------------------------------------

TWILIO_TOKEN = "demo-twilio-token"  # noqa: S105 - the emulator's published demo credential


async def twilio_calls(request: web.Request) -> web.Response:
    """POST /2010-04-01/Accounts/{sid}/Calls.json: To, From and Url required."""
    emulator = request.app[EMULATOR]
    sid = request.match_info["sid"]
    expected = "Basic " + base64.b64encode(f"{sid}:{TWILIO_TOKEN}".encode()).decode()
    if request.headers.get("Authorization") != expected:
        return _error(401, "authenticate", "20003")
    if (wait := emulator.rate_limited(time.time())) > 0:
        return _too_many(emulator, wait)
    form = await request.post()
    missing = [k for k in ("To", "From") if not form.get(k)]
    if missing or not (form.get("Url") or form.get("Twiml") or form.get("ApplicationSid")):
        return _error(400, f"missing {', '.join(missing) or 'Url/Twiml/ApplicationSid'}", "21201")
    return web.json_response(
        {
            "sid": "CA" + uuid.uuid4().hex,
            "status": "queued",
            "to": form["To"],
            "from": form["From"],
        },
        status=201,
    )


def build_app(emulator: Emulator | None = None) -> web.Application:
    """The emulator's aiohttp application."""
    app = web.Application(middlewares=[_record])
    app[EMULATOR] = emulator or Emulator()
    app.add_routes(
        [
            web.post("/oauth/token", token),
            web.post("/api/v2/conversations/callbacks", callbacks),
            web.post("/api/v2/taskmanagement/workitems", workitems),
            web.post("/api/v2/outbound/contactlists/{contactListId}/contacts", contacts),
            web.post("/api/v2/analytics/queues/observations/query", observations),
            web.get("/api/v1/customers", crm_list),
            web.get("/api/v1/customers/{id:[^/]+}", crm_customer),
            web.put("/_emulator/customers/{id:[^/]+}", put_customer),
            web.get("/_emulator/requests", get_requests),
            web.delete("/_emulator/requests", delete_requests),
            web.put("/_emulator/settings", put_settings),
            web.get("/.well-known/openid-configuration", cxone_openid),
            web.post("/auth/token", cxone_token),
            web.get("/.well-known/cxone-configuration", cxone_configuration),
            web.post(
                "/incontactapi/services/{version}/scripts/{scriptId}/start", cxone_script_start
            ),
            web.get(
                "/incontactapi/services/{version}/skills/{skillId}/activity", cxone_skill_activity
            ),
            web.post("/2010-04-01/Accounts/{sid}/Calls.json", twilio_calls),
        ]
    )
    return app
