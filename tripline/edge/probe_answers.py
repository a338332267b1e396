"""What one answer to a `check-config --probe` request means: a line of the report.

Pure (no I/O): an HTTP answer, or the reason there was none, becomes ok with what was read, or a
failure naming the status, the vendor's own message and the likely cause (a missing permission,
a wrong id, a wrong host). Whatever the server sent — an HTML error page, invalid JSON, a body
nested past any parser's depth, terminal escape codes — becomes one printable line.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

BODY_LIMIT = 1 << 20
"""Bytes of a body read at most: more is reported, never parsed (a probe reads small objects)."""
_SHOWN = 160  # characters of a vendor's message shown


class Status(StrEnum):
    """What became of one check."""

    OK = "ok"
    FAILED = "FAILED"
    NOT_CONFIGURED = "not configured"
    SKIPPED = "skipped"
    """Not run: a check it depends on (the token) failed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    """One line of the report."""

    check: str
    """Its name: 'genesys token', 'crm', …"""
    status: Status
    detail: str
    """What was asked and what came back, or why it was not asked."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    """An HTTP answer, read (at most BODY_LIMIT bytes of its body)."""

    status: int
    content_type: str
    raw: bytes
    truncated: bool = False
    """The body was longer than BODY_LIMIT."""
    retry_after: str = ""
    location: str = ""
    """A redirect's Location (redirects are reported, never followed)."""


@dataclass(frozen=True, slots=True)
class Unreachable:
    """No HTTP answer: refused, timed out, a name that does not resolve, a bad URL, TLS."""

    reason: str


Answer = Reply | Unreachable


@dataclass(frozen=True, slots=True)
class Problem:
    """What is wrong with a 2xx body (a reader's answer when it cannot use it)."""

    text: str


@dataclass(frozen=True, slots=True)
class NotJson:
    """A body that is no JSON document."""

    what: str
    html: bool = False
    text: str = ""
    """The start of a plain-text body, printable: what a refusal quotes."""


Reader = Callable[[Any], "str | Problem"]
"""Reads a 2xx JSON body: a short summary of what it holds, or what is wrong with it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Hints:
    """What a refusal of this request most likely means, per status."""

    unauthorized: str
    """401: which credential was refused."""
    forbidden: str = ""
    """403: the permission the request needs."""
    not_found: str = ""
    """404: which configured id or host is probably wrong."""
    bad_request: str = ""
    """400: what an OAuth error most likely means (RFC 6749 answers invalid_grant with 400)."""


def printable(text: str, limit: int = _SHOWN) -> str:
    """`text` on one line: control characters (escape codes, newlines) as spaces, cut to `limit`."""
    flat = "".join(c if c.isprintable() else " " for c in text[: limit * 2])
    flat = " ".join(flat.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def decode(reply: Reply) -> Any | NotJson:  # noqa: ANN401 - a JSON document
    """The body as JSON (None when empty), or what it is instead."""
    if reply.truncated:
        return NotJson(f"a body over {BODY_LIMIT // 1024} KiB")
    if not reply.raw.strip():
        return None
    try:
        return orjson.loads(reply.raw)
    except orjson.JSONDecodeError:  # invalid, or nested past orjson's depth limit
        pass
    text = reply.raw[:4096].decode("utf-8", "replace")
    if "html" in reply.content_type.lower() or text.lstrip().startswith("<"):
        found = re.search(r"<title[^>]*>(.*?)</title", text, re.IGNORECASE | re.DOTALL)
        title = printable(found.group(1), 60) if found else ""
        return NotJson(f"an HTML page{f' ({title!r})' if title else ''}", html=True)
    shown = printable(text, 60)
    return NotJson(f"not JSON: {shown!r}", text=shown)


def vendor_message(body: Any) -> str:  # noqa: ANN401 - a decoded JSON body
    """The vendor's own error text, whatever its shape (Genesys, CXone, Twilio, OAuth, other)."""
    if isinstance(body, NotJson):
        return body.text or body.what
    if isinstance(body, str):
        return printable(body)
    if not isinstance(body, dict):
        return ""
    parts = []
    for name in ("error_description", "message", "error", "detail", "code"):
        value = body.get(name)
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
            text = printable(str(value))
            if text not in parts:
                parts.append(text)
    return printable("; ".join(parts[:3]))


def judge(check: str, request: str, answer: Answer, hints: Hints, read: Reader) -> Finding:
    """The finding of one request: ok with what `read` made of its body, or failed, and why.

    Args:
        check: the check's name.
        request: the request as the report shows it ("GET https://…").
        answer: what came back.
        hints: what a 401, 403 or 404 most likely means here.
        read: reads a 2xx JSON body.

    Returns:
        The report's line for it.
    """
    outcome = evaluate(answer, hints, read)
    if isinstance(outcome, Problem):
        return Finding(check=check, status=Status.FAILED, detail=f"{request}: {outcome.text}")
    return Finding(check=check, status=Status.OK, detail=f"{request}: {outcome}")


def evaluate(answer: Answer, hints: Hints, read: Reader) -> str | Problem:
    """What `read` made of a 2xx answer, or the Problem that stands instead."""
    body = accepted(answer, hints)
    if isinstance(body, Problem):
        return body
    assert isinstance(answer, Reply)  # noqa: S101 - accepted() said so
    try:
        found = read(body)
    except (AttributeError, KeyError, TypeError, ValueError, IndexError) as exc:
        # A reader met a shape it did not expect: the body is the problem, not the probe.
        return Problem(f"HTTP {answer.status} but an unexpected body ({type(exc).__name__})")
    if isinstance(found, Problem):
        return Problem(f"HTTP {answer.status} but {found.text}")
    return printable(found, 200)


def accepted(answer: Answer, hints: Hints) -> Any | Problem:  # noqa: ANN401 - a JSON body
    """The JSON body of a 2xx answer (None when empty), or the Problem that stands instead."""
    if isinstance(answer, Unreachable):
        return Problem(f"no answer: {answer.reason}")
    body = decode(answer)
    if not 200 <= answer.status < 300:
        return Problem(refusal(answer, body, hints))
    if isinstance(body, NotJson):
        where = " (is the base URL the API host, not a web page?)" if body.html else ""
        return Problem(f"HTTP {answer.status} but {body.what}{where}")
    return body


def refusal(reply: Reply, body: Any, hints: Hints) -> str:  # noqa: ANN401 - a decoded body
    """Why a non-2xx answer failed: its status, the vendor's message and the likely cause."""
    message = vendor_message(body)
    head = f"HTTP {reply.status}" + (f" {message!r}" if message else "")
    cause = _cause(reply, hints)
    return f"{head}: {cause}" if cause else head


def _cause(reply: Reply, hints: Hints) -> str:
    status = reply.status
    by_status = {
        400: hints.bad_request,
        401: hints.unauthorized,
        403: hints.forbidden or "refused: the credentials lack a right this request needs",
        404: hints.not_found or "not found: check the base URL",
    }
    if status in by_status:
        return by_status[status]
    if 300 <= status < 400:
        where = printable(reply.location, 100) or "elsewhere"
        return f"redirected to {where}: configure the URL it points to"
    if status == 429:
        wait = printable(reply.retry_after, 20) or "?"
        return f"rate limited (Retry-After {wait} s): the budget is spent, try again later"
    if status >= 500:
        return "the service failed on its side; try again later"
    return ""


def summary(findings: list[Finding]) -> tuple[list[str], int]:
    """The report's lines and the command's exit code (1 when any check failed)."""
    width = max((len(f.check) for f in findings), default=0)
    status_width = max((len(f.status.value) for f in findings), default=0)
    lines = [
        # A configured id or a --customer may hold escape codes too: every detail is flattened.
        f"{f.check:<{width}}  {f.status.value:<{status_width}}  {printable(f.detail, 1000)}"
        for f in findings
    ]
    failed = [f.check for f in findings if f.status == Status.FAILED]
    run = [f for f in findings if f.status in (Status.OK, Status.FAILED)]
    if failed:
        lines.append(f"{len(failed)} of {len(run)} checks failed: {', '.join(failed)}")
        return lines, 1
    lines.append(f"all {len(run)} checks passed" if run else "nothing to check")
    return lines, 0
