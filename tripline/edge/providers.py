"""What contact centers push to us: Twilio's signed status callbacks (a call's result).

POST /v1/providers/twilio/status. The request is trusted only when X-Twilio-Signature is
Twilio's over the exact URL it requested and the form (tripline/edge/twilio_signature.py); the
URL carries the alert's key, the attempt and the instance that follows it (set when the call
was placed), so they are signed too. A valid terminal status is kept on the record for the
instance following that call (actors/dialing/follow.py), which settles the attempt within a
second; anything else changes nothing.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlsplit

import redis
from aiohttp import web

from tripline.adapters.attempts import PUSH_LUA, follow_key, pushed_blob
from tripline.adapters.backends.outcomes import twilio_sequence, twilio_status
from tripline.edge import twilio_signature
from tripline.edge.responses import RETRY_AFTER, SERVICE, problem_response
from tripline.pipeline.reach import Evidence
from tripline.service.lease import registry_keys

if TYPE_CHECKING:
    from tripline.supervisor import Service

log = logging.getLogger(__name__)

_MAX_FORM = 16 * 1024  # a status callback is well under 2 KB
_BODY_TIMEOUT_SECONDS = 10.0  # as the webhook's: a body that stops arriving holds nothing longer


async def twilio_status_callback(request: web.Request) -> web.Response:
    """POST /v1/providers/twilio/status: 204 when taken (or not for us), 401 when not signed."""
    service = request.app[SERVICE]
    config = service.config
    raw = await _form(request)
    if isinstance(raw, web.Response):
        return raw
    pairs = parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True)
    params: dict[str, list[str]] = {}
    for name, value in pairs:
        params.setdefault(name, []).append(value)
    # The query exactly as it arrived: Twilio signed the URL it requested, %-escapes and all.
    url = signed_url(config.outcomes.twilio_status_url, request.rel_url.raw_query_string)
    signature = request.headers.get("X-Twilio-Signature", "")
    if not url or not twilio_signature.valid(url, params, signature, config.twilio.auth_token):
        log.warning("twilio status callback refused: bad or missing X-Twilio-Signature")
        return problem_response(
            401,
            "unauthorized",
            [
                {
                    "field": "X-Twilio-Signature",
                    "reason": "invalid",
                    "message": "not Twilio's signature for this URL and form",
                }
            ],
        )
    form = {name: values[-1] for name, values in params.items()}
    evidence = twilio_status(form)
    key, instance = request.query.get("key", ""), request.query.get("i", "")
    attempt, call_sid = request.query.get("n", ""), form.get("CallSid", "")
    # Signed, but int() must still be able to read it (no '²', no 5,000 digits).
    readable = attempt.isascii() and attempt.isdigit() and len(attempt) <= 9
    if evidence is None or not (key and instance and readable and call_sid):
        return web.Response(status=204)  # a progress event, or not one of our calls
    try:
        await asyncio.to_thread(
            functools.partial(
                _keep,
                service,
                key=key,
                attempt=int(attempt),
                instance=instance,
                call_sid=call_sid,
                evidence=evidence,
                sequence=twilio_sequence(form),
            )
        )
    except redis.RedisError:
        # Twilio retries a failed callback; and the follower polls the call anyway.
        return problem_response(503, "unavailable", [], {"Retry-After": RETRY_AFTER})
    return web.Response(status=204)


async def _form(request: web.Request) -> bytes | web.Response:
    """The whole body, however it arrives, within the size limit and the deadline."""
    if (request.content_length or 0) > _MAX_FORM:
        return _too_large()
    raw = bytearray()
    try:
        async with asyncio.timeout(_BODY_TIMEOUT_SECONDS):  # a client that stops sending
            while len(raw) <= _MAX_FORM:
                chunk = await request.content.read(_MAX_FORM + 1 - len(raw))
                if not chunk:
                    break
                raw += chunk
    except TimeoutError:
        return problem_response(
            408,
            "timeout",
            [{"field": "body", "reason": "timeout", "message": "the body did not arrive in time"}],
        )
    return _too_large() if len(raw) > _MAX_FORM else bytes(raw)


def _too_large() -> web.Response:
    response = problem_response(
        413,
        "too_large",
        [{"field": "body", "reason": "too_large", "message": f"at most {_MAX_FORM} bytes"}],
    )
    response.force_close()  # the rest of the body is not read (nor lingered for): hang up
    return response


def signed_url(configured: str, query: str) -> str:
    """The URL Twilio requested: the configured public URL's origin and path, this query."""
    if not configured:
        return ""
    parts = urlsplit(configured)
    base = f"{parts.scheme}://{parts.netloc}{parts.path}"
    return f"{base}?{query}" if query else base


def _keep(
    service: Service,
    *,
    key: str,
    attempt: int,
    instance: str,
    call_sid: str,
    evidence: Evidence,
    sequence: int,
) -> None:
    client, keys = service.redis, service.keys
    blob = pushed_blob(call_sid, evidence, sequence)
    if client.eval(PUSH_LUA, 1, keys.record(key), str(attempt), call_sid, blob, sequence) == 1:
        # The instance that placed the call follows it, unless its lease lapsed: its follow
        # index then was (or is being) adopted, and an entry added there would wait for no
        # one. This instance looks at it instead (either may: the record decides once).
        expires = client.zscore(registry_keys(keys)[0], instance)
        if expires is None or expires <= service.clock():
            instance = service.config.mqtt.client_id
        client.zadd(follow_key(keys, instance), {key: 0})
    else:
        log.info("twilio status for %s attempt %d is not its current call", key, attempt)
