"""Genesys Cloud: client-credentials OAuth, callbacks, workitems, contacts, observations, ids."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

from tripline.devtools.emulator.genesys_outcomes import remember_contact
from tripline.devtools.emulator.outcomes import parse_iso
from tripline.devtools.emulator.state import (
    EMULATOR,
    _error,
    _gate,
    _json_body,
    _too_many,
)

CLIENT_ID, CLIENT_SECRET = "tripline-demo", "demo-secret"
TOKEN_SECONDS = 86400
ATTRIBUTE_MAX = 255


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
    emulator = request.app[EMULATOR]
    cid = str(uuid.uuid4())
    routing = body.get("routingData") or {}
    emulator.place(
        "callback",
        cid,
        call_id=cid,
        phone=body["callbackNumbers"][0],
        scheduled=parse_iso(body.get("callbackScheduledTime")),
        extra={
            "queueId": body.get("queueId") or routing.get("queueId"),
            "callbackNumbers": list(body["callbackNumbers"]),
            "callbackScheduledTime": body.get("callbackScheduledTime"),
        },
    )
    # The callback "exists" but its answer never comes, until the knob is turned off again.
    while emulator.settings.hang_after_receiving:  # noqa: ASYNC110 - a knob, no event
        await asyncio.sleep(0.1)
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
    if "callbackScheduledTime" in body and parse_iso(body["callbackScheduledTime"]) is None:
        return "callbackScheduledTime must be an ISO-8601 instant (yyyy-MM-ddTHH:mm:ss.SSSZ)"
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
    if not all(isinstance(c, dict) and isinstance(c.get("data"), dict) for c in body):
        return _error(400, "every contact needs a data object", "bad.request")
    out = [
        {
            "id": contact.get("id") or uuid.uuid4().hex,
            "contactListId": list_id,
            "data": contact["data"],
            "callable": contact.get("callable", True),
        }
        for contact in body
    ]
    for contact in out:
        remember_contact(request.app[EMULATOR], contact)
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


async def configured(request: web.Request, kind: str, key: str, what: str) -> web.Response:
    """One configured object by the id in the path (emulator/objects.py), or a 404."""
    if (gate := await _gate(request)) is not None:
        return gate
    found = request.app[EMULATOR].objects[kind].get(request.match_info[key])
    if found is None:
        return _error(404, f"{what} not found", "not.found")
    return web.json_response(found)


async def get_queue(request: web.Request) -> web.Response:
    """GET /api/v2/routing/queues/{queueId} (routing:queue:view)."""
    return await configured(request, "queues", "queueId", "queue")


async def get_worktype(request: web.Request) -> web.Response:
    """GET /api/v2/taskmanagement/worktypes/{worktypeId} (workitems:worktype:view)."""
    return await configured(request, "worktypes", "worktypeId", "worktype")


async def get_contact_list(request: web.Request) -> web.Response:
    """GET /api/v2/outbound/contactlists/{contactListId} (outbound:contactList:view)."""
    return await configured(request, "contactlists", "contactListId", "contact list")
