"""GET /v1/ledger (admin token): the ledger's entries by customer, number, period and outcome."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web

from tripline.adapters.ledger.entry import KINDS
from tripline.adapters.ledger.query import (
    MAX_PAGE,
    LedgerQuery,
    decode_cursor,
    encode_cursor,
    parse_instant,
)
from tripline.edge.admin import admin_refusal
from tripline.edge.responses import RETRY_AFTER, SERVICE, json_response, problem_response

log = logging.getLogger("tripline.edge.http_api")

_OUTCOMES = ("called", "suppressed", "deferred", "rejected")
_MAX_VALUE = 256


async def ledger_query(request: web.Request) -> web.Response:
    """GET /v1/ledger?customerId=&phone=&from=&to=&outcome=&kind=&key=&limit=&cursor=.

    Oldest first; `nextCursor` continues after the page (absent on the last one). A phone
    number is looked up by its keyed hash: the ledger never holds the number itself.
    """
    if (refusal := admin_refusal(request)) is not None:
        return refusal
    service = request.app[SERVICE]
    if service.ledger_reader is None:
        problem = {"field": "", "reason": "unavailable", "message": "the ledger is off"}
        return problem_response(404, "not_found", [problem])
    parsed = _query(request.query, service.ledger_reader.hasher.digest)
    if isinstance(parsed, list):
        return problem_response(400, "invalid_query", parsed)
    try:
        page = await asyncio.to_thread(service.ledger_reader.query, parsed)
    except Exception:  # the store is away: say so, the entries are safe in Redis meanwhile
        log.exception("ledger query failed")
        return problem_response(503, "unavailable", [], {"Retry-After": RETRY_AFTER})
    doc: dict[str, Any] = {"entries": page, "count": len(page)}
    if len(page) == parsed.limit:
        doc["nextCursor"] = encode_cursor(page[-1])
    return json_response(doc)


def _query(params: Any, digest: Any) -> LedgerQuery | list[dict[str, str]]:  # noqa: ANN401
    """The query the parameters ask, or every problem with them."""
    problems: list[dict[str, str]] = []

    def bad(name: str, message: str) -> None:
        problems.append({"field": name, "reason": "invalid_field", "message": message})

    values = _values(params, bad)
    fields: dict[str, Any] = {
        "customer_id": values["customerId"],
        "idempotency_key": values["key"],
        "phone_hash": digest(values["phone"]) if values["phone"] else "",
    }
    for name, allowed in (("outcome", _OUTCOMES), ("kind", KINDS)):
        if values[name] and values[name] not in allowed:
            bad(name, f"one of {', '.join(allowed)}")
        fields[name] = values[name]
    limit = values["limit"] or "100"
    if not limit.isdigit() or not 1 <= int(limit) <= MAX_PAGE:
        bad("limit", f"a whole number from 1 to {MAX_PAGE}")
    else:
        fields["limit"] = int(limit)
    for name, attr, parse in _PARSED:
        if values[name]:
            try:
                fields[attr] = parse(values[name])
            except ValueError as exc:
                bad(name, str(exc))
    if problems:
        return problems
    return LedgerQuery(**fields)


def _values(params: Any, bad: Callable[[str, str], None]) -> dict[str, str]:  # noqa: ANN401
    for name in params:
        if name not in _KNOWN:
            bad(name, f"unknown parameter; known: {', '.join(sorted(_KNOWN))}")
    values = {name: str(params.get(name, "")) for name in _KNOWN}
    for name, value in values.items():
        if len(value) > _MAX_VALUE:
            bad(name, f"longer than {_MAX_VALUE} characters")
            values[name] = ""
    return values


_KNOWN = frozenset(
    ("customerId", "phone", "from", "to", "outcome", "kind", "key", "limit", "cursor")
)
_PARSED: tuple[tuple[str, str, Callable[[str], Any]], ...] = (
    ("from", "start", parse_instant),
    ("to", "end", parse_instant),
    ("cursor", "after", decode_cursor),
)
