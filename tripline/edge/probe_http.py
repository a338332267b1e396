"""Sends `check-config --probe`'s requests: each contact center's token, then its planned reads.

Every request has one short timeout and follows no redirect; the contact centers are asked at
the same time, each one's requests in order (its token first). Whatever happens — a refused
connection, a name that does not resolve, a TLS failure, a server that never answers, a
discovery document pointing nowhere — becomes a line of the report (tripline/edge/probe.py
says what is asked, tripline/edge/probe_answers.py what an answer means), never a traceback.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import quote

import aiohttp
import yarl

from tripline.conf.schema import Config
from tripline.edge import probe
from tripline.edge.probe_answers import (
    BODY_LIMIT,
    Answer,
    Finding,
    Hints,
    Problem,
    Reply,
    Status,
    Unreachable,
    accepted,
    judge,
    printable,
)
from tripline.edge.probe_readers import cxone_token, discovered, genesys_token

Ask = Callable[..., Awaitable[Answer]]


async def run(
    config: Config, *, customer: str | None, request_seconds: float, now: float
) -> list[Finding]:
    """Every check of `config`, in report order: Genesys, CXone, Twilio, then the CRM.

    Args:
        config: the validated configuration (secrets from the environment).
        customer: a CRM customer id to read instead of the list's first page.
        request_seconds: how long each request may take, all of it.
        now: the time the queries' intervals are computed from.

    Returns:
        The report's findings.
    """
    plans = probe.plan(config, now=now)
    client = aiohttp.ClientTimeout(total=request_seconds)
    async with aiohttp.ClientSession(timeout=client) as http:

        async def ask(method: str, url: str | yarl.URL, **kwargs: Any) -> Answer:  # noqa: ANN401
            return await fetch(http, method, url, seconds=request_seconds, **kwargs)

        groups = await asyncio.gather(
            *(_guarded(p.vendor, _vendor(ask, config, p)) for p in plans),
            _guarded("crm", _crm(ask, config, customer)),
        )
    return [finding for group in groups for finding in group]


async def _guarded(check: str, job: Awaitable[list[Finding]]) -> list[Finding]:
    """A check that failed in an unforeseen way is one failed line, not the end of the report."""
    try:
        return await job
    except Exception as exc:
        return [Finding(check=check, status=Status.FAILED, detail=f"probe error: {exc!r}"[:300])]


async def fetch(
    http: aiohttp.ClientSession,
    method: str,
    url: str | yarl.URL,
    *,
    seconds: float,
    **kwargs: Any,  # noqa: ANN401
) -> Answer:
    """One request: its status and at most BODY_LIMIT bytes of body, or why there was none."""
    try:
        async with http.request(method, url, allow_redirects=False, **kwargs) as resp:
            raw, truncated = bytearray(), False
            async for chunk in resp.content.iter_chunked(1 << 16):
                raw += chunk
                if len(raw) > BODY_LIMIT:
                    truncated = True
                    break
            return Reply(
                status=resp.status,
                content_type=resp.headers.get("Content-Type", ""),
                raw=bytes(raw[:BODY_LIMIT]),
                truncated=truncated,
                retry_after=resp.headers.get("Retry-After", ""),
                location=resp.headers.get("Location", ""),
            )
    except Exception as exc:  # every way a request can fail is a reason on the report's line
        return Unreachable(unreachable(exc, seconds))


def unreachable(exc: BaseException, seconds: float) -> str:
    """Why a request got no answer, in words."""
    reason: str
    match exc:
        case aiohttp.ClientOSError():  # connecting, or the connection broke
            reason = _connection(exc)
        case TimeoutError():
            reason = f"no answer within {seconds:g} s"
        case aiohttp.InvalidURL():
            reason = f"not a valid URL: {exc.url}"
        case aiohttp.NonHttpUrlClientError():
            reason = f"not an http(s) URL: {exc}"
        case aiohttp.ServerDisconnectedError():
            reason = "the server closed the connection without answering"
        case aiohttp.ClientResponseError():
            reason = f"not an HTTP answer: {exc.message}"
        case aiohttp.ClientPayloadError():
            reason = f"the body broke off: {exc}"
        case _:
            reason = repr(exc)
    return printable(reason, 200)


def _connection(exc: aiohttp.ClientOSError) -> str:
    match exc:
        case aiohttp.ClientConnectorCertificateError():
            return f"TLS certificate not accepted: {exc.certificate_error}"
        case aiohttp.ClientConnectorDNSError():
            return f"host name {exc.host!r} does not resolve"
        case aiohttp.ClientConnectorSSLError():
            return f"TLS handshake failed with {exc.host}:{exc.port}"
        case aiohttp.ClientConnectorError():
            errno = exc.os_error.errno
            why = os.strerror(errno) if errno else str(exc.os_error)
            return f"cannot connect to {exc.host}:{exc.port}: {why}"
    return f"connection failed: {os.strerror(exc.errno) if exc.errno else exc}"


def _not_configured(vendor: str) -> Finding:
    return Finding(
        check=vendor,
        status=Status.NOT_CONFIGURED,
        detail="no [dialer] backend, [tasks] backend or occupancy source uses it",
    )


def _skipped(reads: Sequence[probe.Read], why: str) -> list[Finding]:
    return [Finding(check=r.check, status=Status.SKIPPED, detail=why) for r in reads]


async def _vendor(ask: Ask, config: Config, plan: probe.VendorPlan) -> list[Finding]:
    if not plan.roles:
        return [_not_configured(plan.vendor)]
    found = await _signed_in_reads(ask, config, plan)
    first = found[0]  # says what the config uses this contact center for
    used = f"[used for {', '.join(plan.roles)}] "
    return [Finding(check=first.check, status=first.status, detail=used + first.detail), *found[1:]]


async def _signed_in_reads(ask: Ask, config: Config, plan: probe.VendorPlan) -> list[Finding]:
    if plan.unset:
        return [
            Finding(
                check=f"{plan.vendor} credentials",
                status=Status.FAILED,
                detail=f"{', '.join(plan.unset)} not set (secrets come only from the environment)",
            ),
            *_skipped(plan.reads, "no credentials"),
        ]
    if plan.vendor == "twilio":
        conf = config.twilio
        basic = base64.b64encode(f"{conf.account_sid}:{conf.auth_token}".encode()).decode()
        return await _reads(ask, conf.base_url, {"Authorization": f"Basic {basic}"}, plan.reads)
    sign_in = _genesys_token if plan.vendor == "genesys" else _cxone_token
    first, base, token = await sign_in(ask, config)
    if token is None:
        return [first, *_skipped(plan.reads, "no token")]
    return [first, *await _reads(ask, base, {"Authorization": f"Bearer {token}"}, plan.reads)]


async def _reads(
    ask: Ask, base: str, headers: dict[str, str], reads: Sequence[probe.Read]
) -> list[Finding]:
    found = []
    for read in reads:
        url = f"{base}{read.path}"
        request = f"{read.method} {printable(url, 200)}"
        if read.refused:
            found.append(Finding(check=read.check, status=Status.FAILED, detail=read.refused))
            continue
        # Sent as built: the ids are quoted once already, and yarl would resolve dot segments.
        answer = await ask(read.method, _url(url), headers=headers, json=read.json)
        found.append(judge(read.check, request, answer, read.hints, read.read))
    return found


def _url(url: str) -> str | yarl.URL:
    try:
        return yarl.URL(url, encoded=True)
    except (ValueError, TypeError):  # left to aiohttp, which answers InvalidURL
        return url


SignIn = tuple[Finding, str, str | None]
"""The token check's finding, the API base for the reads, and the token (None: failed)."""


async def _genesys_token(ask: Ask, config: Config) -> SignIn:
    g = config.genesys
    url = f"{g.login_url}/oauth/token"
    basic = base64.b64encode(f"{g.client_id}:{g.client_secret}".encode()).decode()
    answer = await ask(
        "POST",
        url,
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {basic}"},
    )
    refused = "client_id and TRIPLINE__GENESYS__CLIENT_SECRET refused (another region's login?)"
    hints = Hints(unauthorized=refused, bad_request=refused)
    body = accepted(answer, hints)
    got = genesys_token(body) if not isinstance(body, Problem) else body
    return _signed_in("genesys token", f"POST {printable(url, 200)}", got, g.base_url)


async def _cxone_token(ask: Ask, config: Config) -> SignIn:
    c = config.cxone
    step = f"GET {printable(c.discovery_url, 200)}/.well-known/openid-configuration"
    answer = await ask("GET", f"{c.discovery_url}/.well-known/openid-configuration")
    hints = Hints(unauthorized="discovery refused", not_found="no discovery here: discovery_url")
    body = accepted(answer, hints)
    endpoint = discovered(body, "token_endpoint") if not isinstance(body, Problem) else body
    if isinstance(endpoint, Problem):
        return _signed_in("cxone token", step, endpoint, "")
    form = {
        "grant_type": "password",
        "username": c.access_key_id,
        "password": c.access_key_secret,
        "client_id": c.client_id,
        "client_secret": c.client_secret,
    }
    step = f"POST {printable(endpoint, 200)}"
    refused = (
        "the access key (access_key_id, TRIPLINE__CXONE__ACCESS_KEY_SECRET) or the application "
        "(client_id, TRIPLINE__CXONE__CLIENT_SECRET) refused"
    )
    body = accepted(
        await ask("POST", endpoint, data=form), Hints(unauthorized=refused, bad_request=refused)
    )
    grant = cxone_token(body) if not isinstance(body, Problem) else body
    if isinstance(grant, Problem):
        return _signed_in("cxone token", step, grant, "")
    access, tenant = grant
    step = f"GET {printable(c.discovery_url, 200)}/.well-known/cxone-configuration"
    answer = await ask(
        "GET", f"{c.discovery_url}/.well-known/cxone-configuration", params={"tenantId": tenant}
    )
    body = accepted(answer, Hints(unauthorized="discovery refused", not_found="unknown tenant"))
    api = discovered(body, "api_endpoint") if not isinstance(body, Problem) else body
    if isinstance(api, Problem):
        return _signed_in("cxone token", step, api, "")
    base = f"{api}/incontactapi/services/{quote(c.api_version, safe='')}"
    summary = f"token for tenant {printable(tenant, 60)}, API {printable(api, 100)}"
    return _signed_in("cxone token", "discovery, password grant", (access, summary), base)


def _signed_in(check: str, step: str, got: tuple[str, str] | Problem, base: str) -> SignIn:
    if isinstance(got, Problem):
        return Finding(check=check, status=Status.FAILED, detail=f"{step}: {got.text}"), base, None
    token, summary = got
    return Finding(check=check, status=Status.OK, detail=f"{step}: {summary}"), base, token


async def _crm(ask: Ask, config: Config, customer: str | None) -> list[Finding]:
    read = probe.crm_read(config, customer)
    if isinstance(read, Problem):
        return [Finding(check="crm", status=Status.FAILED, detail=read.text)]
    token = config.crm.token
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return await _reads(ask, config.crm.base_url, headers, [read])
