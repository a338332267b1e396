"""NICE CXone: API discovery, access-key OAuth, Studio script starts, skills and their activity."""

from __future__ import annotations

import base64
import random
import time
import uuid

import orjson
from aiohttp import web

from tripline.adapters.backends import studio
from tripline.devtools.emulator.genesys import configured
from tripline.devtools.emulator.state import (
    EMULATOR,
    _error,
    _gate,
    _json_body,
    _too_many,
)

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
    contact = random.randint(10**9, 10**10)
    # CXone splits the parameters at every `|` into p1..pN; tripline's script unescapes each
    # (docs/cxone.md, "2. The Studio script") and takes the number first (p1), then the
    # reference triple.
    script_variables = studio.split(body.get("parameters", ""))
    request.app[EMULATOR].place(
        "cxone",
        str(contact),
        call_id=str(contact),
        phone=script_variables[0],
        extra={
            "skillId": body["skillId"],
            "scriptId": request.match_info["scriptId"],
            "parameters": script_variables,
        },
    )
    return web.json_response({"contactId": contact}, status=202)


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


async def cxone_skill(request: web.Request) -> web.Response:
    """GET /incontactapi/services/{v}/skills/{skillId}: the skill's details, flat.

    The shape of NICE's Admin API specification as a client generated from it declares it
    (GitHub calljacob/nice-cxone-api, AdminSkillsService.getSkillsId), cut to what names it.
    """
    return await configured(request, "skills", "skillId", "skill")
