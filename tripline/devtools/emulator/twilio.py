"""Twilio: Calls.json with HTTP Basic auth, the call resource, and signed status callbacks."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import time
import uuid
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlencode

import aiohttp
import yarl
from aiohttp import web

from tripline.devtools.emulator.outcomes import PlacedCall
from tripline.devtools.emulator.state import (
    EMULATOR,
    Emulator,
    _error,
    _too_many,
)

TWILIO_TOKEN = "demo-twilio-token"  # noqa: S105 - the emulator's published demo credential
CALLBACK_TIMEOUT_SECONDS = 5.0
AMD_MODES = ("Enable", "DetectMessageEnd")
EVENTS = ("initiated", "ringing", "answered", "completed")
TERMINAL = {
    "answered": "completed",
    "voicemail": "completed",  # without AMD Twilio cannot tell a machine from a person
    "no_answer": "no-answer",
    "busy": "busy",
    "failed": "failed",
}
DURATION = {"answered": 95, "voicemail": 25}
"""CallDuration (seconds) of an answered call; the others never connected."""

log = logging.getLogger(__name__)


def signature(url: str, params: dict[str, str]) -> str:
    """X-Twilio-Signature: base64(HMAC-SHA1(auth token, url + each name + value, sorted))."""
    message = url + "".join(name + params[name] for name in sorted(params))
    digest = hmac.new(TWILIO_TOKEN.encode(), message.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def _refused(request: web.Request) -> web.Response | None:
    """Basic auth as the account, then the rate window."""
    emulator = request.app[EMULATOR]
    sid = request.match_info["sid"]
    expected = "Basic " + base64.b64encode(f"{sid}:{TWILIO_TOKEN}".encode()).decode()
    if request.headers.get("Authorization") != expected:
        return _error(401, "authenticate", "20003")
    if (wait := emulator.rate_limited(time.time())) > 0:
        return _too_many(emulator, wait)
    return None


async def twilio_calls(request: web.Request) -> web.Response:
    """POST /2010-04-01/Accounts/{sid}/Calls.json: To, From and Url required."""
    if (refused := _refused(request)) is not None:
        return refused
    form = await request.post()
    missing = [k for k in ("To", "From") if not form.get(k)]
    if missing or not (form.get("Url") or form.get("Twiml") or form.get("ApplicationSid")):
        return _error(400, f"missing {', '.join(missing) or 'Url/Twiml/ApplicationSid'}", "21201")
    options = _callback_options(form)
    if isinstance(options, str):
        return _error(400, options, "21201")
    emulator, sid = request.app[EMULATOR], "CA" + uuid.uuid4().hex
    call = emulator.place(
        "twilio",
        sid,
        call_id=sid,
        phone=str(form["To"]),
        extra={"account": request.match_info["sid"], "from": str(form["From"]), **options},
    )
    if call.extra["url"]:
        _spawn(emulator, _report_when_done(emulator, call))
    return web.json_response(
        {"sid": sid, "status": "queued", "to": form["To"], "from": form["From"]}, status=201
    )


def _callback_options(form: Any) -> dict[str, Any] | str:  # noqa: ANN401 - a MultiDict
    method = str(form.get("StatusCallbackMethod", "POST")).upper()
    if method not in ("GET", "POST"):
        return "StatusCallbackMethod must be GET or POST"
    events = [str(e) for e in form.getall("StatusCallbackEvent", [])]
    events = [part for e in events for part in e.split()]  # also "initiated ringing"
    if any(e not in EVENTS for e in events):
        return f"StatusCallbackEvent must be among {', '.join(EVENTS)}"
    amd = str(form.get("MachineDetection", ""))
    if amd and amd not in AMD_MODES:
        return f"MachineDetection must be one of {', '.join(AMD_MODES)}"
    return {
        "url": str(form.get("StatusCallback", "")),
        "method": method,
        "events": events,
        "amd": amd,
        "reported": False,
        "sequence": 0,
    }


def _spawn(emulator: Emulator, job: Any) -> None:  # noqa: ANN401 - a coroutine
    task = asyncio.get_running_loop().create_task(job)
    emulator.tasks.add(task)
    task.add_done_callback(emulator.tasks.discard)


def status(call: PlacedCall, now: float) -> str:
    """The call resource's status: queued, then ringing, then how it ended."""
    if call.canceled:
        return "canceled"
    if now >= call.visible_at:
        return TERMINAL[call.result]
    return "queued" if now < call.at(0.5) else "ringing"


def answered_by(call: PlacedCall) -> str | None:
    """AnsweredBy: only when AMD was asked, and only for a call someone (or something) took."""
    if not call.extra.get("amd") or call.canceled or call.result not in ("answered", "voicemail"):
        return None
    if call.result == "answered":
        return "human"
    return "machine_start" if call.extra["amd"] == "Enable" else "machine_end_beep"


async def _report_when_done(emulator: Emulator, call: PlacedCall) -> None:
    """Wait for the result (the clock may be a test's), then send the callbacks asked for."""
    # Polled, not slept in one go: a test's clock may be wound on meanwhile.
    while (left := call.visible_at - emulator.clock()) > 0 and not call.extra["reported"]:  # noqa: ASYNC110
        await asyncio.sleep(min(left, 0.25))
    if call.extra["reported"]:
        return  # cancelled meanwhile: that sent its own callback
    call.extra["reported"] = True
    took = call.result in ("answered", "voicemail")
    for event, value in (
        ("initiated", "initiated"),
        ("ringing", "ringing"),
        ("answered", "in-progress"),
    ):
        if event in call.extra["events"] and (event != "answered" or took):
            await _send(call, value)
    await _send(call, TERMINAL[call.result])


async def _send(call: PlacedCall, call_status: str) -> None:
    """One status callback, signed; a failure is logged, never raised."""
    params = {
        "CallSid": call.id,
        "AccountSid": call.extra["account"],
        "From": call.extra["from"],
        "To": call.phone,
        "Direction": "outbound-api",
        "ApiVersion": "2010-04-01",
        "CallStatus": call_status,
        "CallbackSource": "call-progress-events",
        "SequenceNumber": str(call.extra["sequence"]),
        "Timestamp": format_datetime(datetime.now(UTC)),
    }
    call.extra["sequence"] += 1
    if call_status == "completed":
        params["CallDuration"] = str(DURATION.get(call.result, 0))
    if call_status in ("in-progress", "completed") and (by := answered_by(call)):
        params["AnsweredBy"] = by
    url, method = call.extra["url"], call.extra["method"]
    if method == "GET":
        url = f"{url}{'&' if '?' in url else '?'}{urlencode(params)}"
        data, signed = None, signature(url, {})
    else:
        data, signed = params, signature(url, params)
    timeout = aiohttp.ClientTimeout(total=CALLBACK_TIMEOUT_SECONDS)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            # Sent exactly as signed: yarl would otherwise re-quote the query (%3A -> :).
            session.request(
                method,
                yarl.URL(url, encoded=True),
                data=data,
                headers={"X-Twilio-Signature": signed},
            ) as resp,
        ):
            await resp.read()
            if resp.status >= 400:
                log.warning("status callback %s for %s: HTTP %d", call_status, call.id, resp.status)
    except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
        log.warning("status callback %s for %s failed: %r", call_status, call.id, exc)


def _rfc2822(at: float) -> str:
    """Twilio's resource dates: Mon, 30 Nov 2026 00:53:20 +0000."""
    return format_datetime(datetime.fromtimestamp(at, UTC))


def _call(request: web.Request) -> PlacedCall | web.Response:
    found = request.app[EMULATOR].calls["twilio"].get(request.match_info["CallSid"])
    if found is None or found.extra["account"] != request.match_info["sid"]:
        return _error(404, "The requested resource was not found", "20404")
    return found


def resource(call: PlacedCall, now: float) -> dict[str, Any]:
    """The Call resource as GET …/Calls/{CallSid}.json answers it."""
    current = status(call, now)
    ended = call.finished(now)
    return {
        "sid": call.id,
        "account_sid": call.extra["account"],
        "status": current,
        "answered_by": answered_by(call) if ended else None,
        "duration": str(DURATION.get(call.result, 0) if current == "completed" else 0)
        if ended
        else None,
        "to": call.phone,
        "from": call.extra["from"],
        "direction": "outbound-api",
        "start_time": _rfc2822(call.created),
        "end_time": _rfc2822(call.ended()) if ended else None,
    }


async def twilio_call(request: web.Request) -> web.Response:
    """GET /2010-04-01/Accounts/{sid}/Calls/{CallSid}.json."""
    if (refused := _refused(request)) is not None:
        return refused
    call = _call(request)
    if isinstance(call, web.Response):
        return call
    return web.json_response(resource(call, request.app[EMULATOR].clock()))


async def twilio_update_call(request: web.Request) -> web.Response:
    """POST …/Calls/{CallSid}.json Status=canceled|completed: end it before its result shows."""
    if (refused := _refused(request)) is not None:
        return refused
    call = _call(request)
    if isinstance(call, web.Response):
        return call
    form = await request.post()
    emulator = request.app[EMULATOR]
    now = emulator.clock()
    wanted = form.get("Status")
    if wanted is None:
        return web.json_response(resource(call, now))
    if wanted not in ("canceled", "completed"):
        return _error(400, "Status must be canceled or completed", "21218")
    if call.finished(now):
        return _error(400, "Call is not in-progress. Cannot redirect.", "21220")
    # Before its result the call is queued or ringing: either status ends it as canceled.
    call.canceled_at = now
    if call.extra["url"] and not call.extra["reported"]:
        call.extra["reported"] = True
        _spawn(emulator, _send(call, "canceled"))
    return web.json_response(resource(call, now))


async def twilio_account(request: web.Request) -> web.Response:
    """GET /2010-04-01/Accounts/{sid}.json: the Account resource (twilio.com/docs/iam/api/account).

    Twilio answers with the account's auth_token among its properties; so does the emulator (its
    demo token), so a test can prove that the probe never shows it.
    """
    if (refused := _refused(request)) is not None:
        return refused
    sid = request.match_info["sid"]
    created = _rfc2822(1_700_000_000)
    return web.json_response(
        {
            "sid": sid,
            "owner_account_sid": sid,
            "friendly_name": "tripline demo",
            "status": "active",
            "type": "Full",
            "auth_token": TWILIO_TOKEN,
            "date_created": created,
            "date_updated": created,
            "uri": f"/2010-04-01/Accounts/{sid}.json",
            "subresource_uris": {"calls": f"/2010-04-01/Accounts/{sid}/Calls.json"},
        }
    )
