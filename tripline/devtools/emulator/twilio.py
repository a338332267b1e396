"""Twilio: Calls.json with HTTP Basic auth."""

from __future__ import annotations

import base64
import time
import uuid

from aiohttp import web

from tripline.devtools.emulator.state import (
    EMULATOR,
    _error,
    _too_many,
)

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
