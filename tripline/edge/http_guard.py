"""Browser-facing guards of the HTTP API: cross-site refusal and the security headers.

A web page can make a visitor's browser send a `text/plain` or form POST anywhere (no CORS
preflight for those), so a webhook without a token could be fed from any page the operator
opens. A browser says where such a request comes from (`Origin`, `Sec-Fetch-Site`); devices,
curl and the simulator send neither, and pass. Reads are not refused here: a browser does not
hand a cross-site answer to the page that asked (no CORS headers are ever sent).

Every answer carries `X-Content-Type-Options: nosniff` and a Content-Security-Policy: the
strictest one for JSON and text, and for the two HTML pages one that allows exactly their own
inline `<style>` and `<script>` blocks by hash (no 'unsafe-inline').
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Awaitable, Callable, Sequence

import orjson
from aiohttp import web

CSP = "Content-Security-Policy"
# JSON, text and problem documents: nothing may load, nothing may frame them.
STRICT = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
_UNSAFE = frozenset({"POST", "PUT", "DELETE", "PATCH"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def inline_block(html: str, tag: str) -> str:
    """The text of the page's one inline `<tag>` block, exactly as a browser hashes it."""
    found = re.findall(rf"<{tag}>(.*?)</{tag}>", html, re.DOTALL)
    if len(found) != 1:  # a page that grew a second block must be hashed on purpose
        raise ValueError(f"expected one inline <{tag}>, found {len(found)}")
    return str(found[0])


def source_hash(text: str) -> str:
    """The CSP hash source that allows an inline block with this exact text."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"


def page_policy(
    *, style: str, script: str | None = None, frame_ancestors: Sequence[str] = ("'none'",)
) -> str:
    """The CSP of one of our HTML pages: its own inline style (and script), nothing else.

    Args:
        style: the text of the page's `<style>` block.
        script: the text of its `<script>` block, which talks to this service only.
        frame_ancestors: who may frame it; empty for anyone (no directive).

    Returns:
        The header value.
    """
    parts = ["default-src 'none'", f"style-src {source_hash(style)}"]
    if script is not None:
        parts += [f"script-src {source_hash(script)}", "connect-src 'self'"]
    parts += ["base-uri 'none'", "form-action 'none'"]
    if frame_ancestors:
        parts.append("frame-ancestors " + " ".join(frame_ancestors))
    return "; ".join(parts)


def strict_policy(frame_ancestors: Sequence[str]) -> str:
    """STRICT with another frame-ancestors (the agent page's answers show in its iframe)."""
    base = STRICT.removesuffix("; frame-ancestors 'none'")
    return f"{base}; frame-ancestors {' '.join(frame_ancestors)}" if frame_ancestors else base


def cross_site(
    origins: Sequence[str], fetch_sites: Sequence[str], host: str, allowed: Sequence[str]
) -> str | None:
    """Why a state-changing request is a browser's cross-site one, or None when it is not.

    Args:
        origins: every Origin header (a browser sends one; more than one is never ours).
        fetch_sites: every Sec-Fetch-Site header.
        host: the request's Host, which a same-origin page's Origin names.
        allowed: further origins allowed ([http] allowed_origins).

    Returns:
        The problem's message, or None.
    """
    if any(site.strip().lower() == "cross-site" for site in fetch_sites):
        return "a cross-site request from a browser (Sec-Fetch-Site: cross-site)"
    allowed_lower = {a.lower() for a in allowed}
    for origin in origins:
        value = origin.strip().lower()
        scheme, sep, netloc = value.partition("://")
        same = bool(sep) and scheme in ("http", "https") and netloc == host.lower()
        if not same and value not in allowed_lower:
            shown = origin.encode("ascii", "backslashreplace").decode()[:100]
            return f"Origin {shown} is neither this service nor in [http] allowed_origins"
    return None


def _forbidden(message: str) -> web.Response:
    problem = {"field": "Origin", "reason": "cross_site", "message": message}
    return web.Response(
        body=orjson.dumps({"error": "forbidden", "problems": [problem]}),
        status=403,
        content_type="application/json",
    )


def install(
    app: web.Application,
    *,
    allowed_origins: Sequence[str],
    frame_ancestors: Sequence[str],
    agent_path: str,
) -> None:
    """Add the cross-site refusal and the security headers to `app`.

    Args:
        app: the application, before it starts.
        allowed_origins: browser origins allowed besides the service's own.
        frame_ancestors: who may frame the agent page ([http] frame_ancestors).
        agent_path: the prefix of the agent page's route: its JSON answers and refusals
            show in the same iframe, so they keep its frame-ancestors.
    """
    agent_policy = strict_policy(frame_ancestors)

    @web.middleware
    async def refuse_cross_site(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method in _UNSAFE:
            why = cross_site(
                request.headers.getall("Origin", []),
                request.headers.getall("Sec-Fetch-Site", []),
                request.host,
                allowed_origins,
            )
            if why is not None:
                return _forbidden(why)
        return await handler(request)

    async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
        response.headers["X-Content-Type-Options"] = "nosniff"
        if CSP not in response.headers:
            framed = request.path.startswith(agent_path)
            response.headers[CSP] = agent_policy if framed else STRICT

    app.middlewares.append(refuse_cross_site)
    app.on_response_prepare.append(security_headers)
