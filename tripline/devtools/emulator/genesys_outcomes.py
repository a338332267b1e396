"""Genesys call outcomes: the details query, a callback's live state and cancel, contact results."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from aiohttp import web

from tripline.devtools.emulator.genesys_analytics import (
    AGENT_USER_ID,
    conversation,
    participant_id,
)
from tripline.devtools.emulator.outcomes import PlacedCall, iso, parse_iso
from tripline.devtools.emulator.state import EMULATOR, Emulator, _error, _gate, _json_body

PAGE_MAX, PAGE_DEFAULT = 100, 25
DAYS_WITH_FILTERS, DAYS_WITHOUT = 31, 7
_OPERATORS = ("matches", "exists", "notExists")
_PHONE = re.compile(r"^\+?[0-9][0-9 ().-]{5,}$")


def _json(body: Any, status: int = 200) -> web.Response:  # noqa: ANN401
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


async def details_query(request: web.Request) -> web.Response:
    """POST /api/v2/analytics/conversations/details/query: the callbacks placed, by result."""
    if (gate := await _gate(request)) is not None:
        return gate
    body = await _json_body(request)
    if isinstance(body, web.Response):
        return body
    if not isinstance(body, dict):
        return _error(400, "body must be a ConversationQuery object", "bad.request")
    query = _read_query(body)
    if isinstance(query, str):
        return _error(400, query, "bad.request")
    (first, last), filters, size, number = query
    emulator = request.app[EMULATOR]
    now = emulator.clock()
    found = []
    calls = emulator.calls["callback"]
    named = _named_ids(filters)
    # Narrowed to the ids the filters name, when they name them (tripline's queries do): a
    # conversation built for each of the 20,000 calls of a bench run made each query ~1 s of
    # this process' one loop, and the callbacks POSTed meanwhile waited seconds behind it.
    candidates = calls.values() if named is None else [calls[i] for i in named if i in calls]
    for call in candidates:
        conv = conversation(call, now)
        if first <= call.created < last and all(_matches(f, conv) for f in filters):
            found.append(conv)
    found.sort(key=lambda c: str(c["conversationStart"]), reverse=body.get("order") == "desc")
    page = found[(number - 1) * size : number * size]
    return _json({"conversations": page, "totalHits": len(found)})


def _read_query(  # noqa: PLR0911 - one answer per rule broken
    body: dict[str, Any],
) -> tuple[tuple[float, float], list[dict[str, Any]], int, int] | str:
    """(day-rounded interval, conversationFilters, pageSize, pageNumber), or the problem."""
    interval = _interval(body.get("interval"))
    if isinstance(interval, str):
        return interval
    days, span = interval
    filters = body.get("conversationFilters", [])
    if not isinstance(filters, list) or not all(_check_filter(f) == "" for f in filters):
        return next(
            (p for f in filters if (p := _check_filter(f))),
            "conversationFilters must be a list",
        )
    limit = DAYS_WITH_FILTERS if filters else DAYS_WITHOUT
    if span > timedelta(days=limit).total_seconds():
        return (
            f"the interval may span at most {limit} days {'with' if filters else 'without'} filters"
        )
    paging = body.get("paging", {})
    if not isinstance(paging, dict):
        return "paging must be an object"
    size, number = paging.get("pageSize", PAGE_DEFAULT), paging.get("pageNumber", 1)
    if type(size) is not int or not 1 <= size <= PAGE_MAX:
        return f"paging.pageSize must be 1 to {PAGE_MAX}"
    if type(number) is not int or number < 1:
        return "paging.pageNumber must be >= 1"
    return days, filters, size, number


def _interval(value: Any) -> tuple[tuple[float, float], float] | str:  # noqa: ANN401
    """The days the interval touches, and its length in seconds.

    Conversations match on the day they started (UTC), as Genesys matches them.
    """
    if not isinstance(value, str) or value.count("/") != 1:
        return "interval is required: <ISO-8601>/<ISO-8601>"
    start, end = (parse_iso(part) for part in value.split("/"))
    if start is None or end is None or end <= start:
        return "interval must be two ISO-8601 instants, the first before the second"
    first = datetime.fromtimestamp(start, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    last = datetime.fromtimestamp(end, UTC)
    midnight = last.replace(hour=0, minute=0, second=0, microsecond=0)
    after = midnight if midnight == last else midnight + timedelta(days=1)
    return (first.timestamp(), after.timestamp()), end - start


def _check_filter(item: Any, depth: int = 0) -> str:  # noqa: ANN401, PLR0911
    if not isinstance(item, dict) or item.get("type") not in ("and", "or"):
        return "every filter needs type and|or"
    predicates, clauses = item.get("predicates", []), item.get("clauses", [])
    if not isinstance(predicates, list) or not isinstance(clauses, list):
        return "predicates and clauses must be lists"
    if not predicates and not clauses:
        return "a filter needs predicates or clauses"
    if clauses and depth >= 1:
        return "clauses nest at most two levels"
    for predicate in predicates:
        if not isinstance(predicate, dict) or not isinstance(predicate.get("dimension"), str):
            return "every predicate needs a dimension"
        operator = predicate.get("operator", "matches")
        if operator not in _OPERATORS:
            return f"operator must be one of {', '.join(_OPERATORS)}"
        if operator == "matches" and not isinstance(predicate.get("value"), str):
            return "a matches predicate needs a value"
    return next((p for c in clauses if (p := _check_filter(c, depth + 1))), "")


def _named_ids(filters: list[dict[str, Any]]) -> list[str] | None:
    """The only conversation ids the filters can match, or None when they do not say.

    The filters all hold (an `and`), so one `or` of conversationId `matches` predicates alone
    limits them to its ids; each further such filter narrows that list.
    """
    named: list[str] | None = None
    for item in filters:
        predicates = item.get("predicates", [])
        if (
            item["type"] != "or"
            or item.get("clauses")
            or not predicates
            or any(
                p.get("dimension") != "conversationId" or p.get("operator", "matches") != "matches"
                for p in predicates
            )
        ):
            continue
        ids = dict.fromkeys(str(p["value"]) for p in predicates)  # ordered, each once
        named = list(ids) if named is None else [i for i in named if i in ids]
    return named


def _matches(item: dict[str, Any], conv: dict[str, Any]) -> bool:
    """Conversation dimensions are read off the conversation; others never match."""
    results = [_holds(p, conv) for p in item.get("predicates", [])]
    results += [_matches(c, conv) for c in item.get("clauses", [])]
    return all(results) if item["type"] == "and" else any(results)


def _holds(predicate: dict[str, Any], conv: dict[str, Any]) -> bool:
    value = conv.get(predicate["dimension"]) if predicate["dimension"] != "participants" else None
    operator = predicate.get("operator", "matches")
    if operator == "exists":
        return value is not None
    if operator == "notExists":
        return value is None
    return value is not None and str(value) == predicate["value"]


def callback_conversation(call: PlacedCall, now: float) -> dict[str, Any]:
    """The live CallbackConversation {id, participants} (call-outcomes.md §1a iii)."""
    done = call.finished(now)
    scheduled = bool(call.extra.get("callbackScheduledTime"))
    customer: dict[str, Any] = {
        "id": participant_id(call, "customer"),
        "purpose": "customer",
        "state": "disconnected" if done else "scheduled" if now < call.starts else "connected",
        "direction": "outbound",
        "queueId": call.extra.get("queueId"),
        "callbackNumbers": call.extra.get("callbackNumbers", [call.phone]),
    }
    acd: dict[str, Any] = {
        "id": participant_id(call, "acd"),
        "purpose": "acd",
        "state": "disconnected" if done else "connected",
        "queueId": call.extra.get("queueId"),
    }
    if scheduled:
        customer["callbackScheduledTime"] = iso(call.starts)
    participants = [customer, acd]
    if done:
        end = iso(call.ended())
        failed = call.result == "failed" and not call.canceled
        customer.update(
            disconnectType="client" if call.canceled else "error" if failed else "endpoint",
            endTime=end,
        )
        acd.update(disconnectType="client" if call.canceled else "transfer", endTime=end)
        if not call.canceled:
            agent = {
                "id": participant_id(call, "agent"),
                "purpose": "agent",
                "userId": AGENT_USER_ID,
                "state": "disconnected",
                "disconnectType": "client",
                "endTime": end,
                "wrapupRequired": True,
            }
            if call.wrapup_code:
                agent["wrapup"] = {"code": call.wrapup_code, "name": call.wrapup_code}
            participants.append(agent)
    return {"id": call.id, "participants": participants}


def _callback(request: web.Request) -> PlacedCall | web.Response:
    cid = request.match_info["conversationId"]
    call = request.app[EMULATOR].calls["callback"].get(cid)
    if call is None:
        return _error(404, f"conversation {cid} not found", "not.found")
    return call


async def get_callback(request: web.Request) -> web.Response:
    """GET /api/v2/conversations/callbacks/{conversationId}: its live state."""
    if (gate := await _gate(request)) is not None:
        return gate
    call = _callback(request)
    if isinstance(call, web.Response):
        return call
    return _json(callback_conversation(call, request.app[EMULATOR].clock()))


async def patch_callback(request: web.Request) -> web.Response:
    """PATCH /api/v2/conversations/callbacks/{conversationId} {"state": "disconnected"}."""
    if (gate := await _gate(request)) is not None:
        return gate
    body = await _json_body(request)
    if isinstance(body, web.Response):
        return body
    if not isinstance(body, dict) or body.get("state") != "disconnected":
        return _error(400, 'state must be "disconnected"', "bad.request")
    call = _callback(request)
    if isinstance(call, web.Response):
        return call
    now = request.app[EMULATOR].clock()
    if call.finished(now):
        return _error(
            400, "the conversation is already disconnected", "conversation.already.disconnected"
        )
    call.canceled_at = now
    return _json(callback_conversation(call, now))


async def put_contact(request: web.Request) -> web.Response:
    """PUT /api/v2/outbound/contactlists/{contactListId}/contacts/{contactId}: update one.

    `callable: false` before the campaign dialled it takes it out of the campaign (a cancel).
    """
    if (gate := await _gate(request)) is not None:
        return gate
    body = await _json_body(request)
    if isinstance(body, web.Response):
        return body
    if not isinstance(body, dict) or not isinstance(body.get("callable", True), bool):
        return _error(400, "body must be a DialerContact (callable a boolean)", "bad.request")
    emulator = request.app[EMULATOR]
    key = f"{request.match_info['contactListId']}/{request.match_info['contactId']}"
    call = emulator.calls["contact"].get(key)
    if call is None:
        return _error(404, "contact not found", "not.found")
    now = emulator.clock()
    contact = {**call.extra["contact"], **{k: v for k, v in body.items() if k == "callable"}}
    call.extra["contact"] = contact
    if contact.get("callable") is False and not call.finished(now):
        call.canceled_at = now
    return _json(dialer_contact(call, now))


def phone_column(data: dict[str, Any]) -> str:
    """The contact list's phone column: `phone` (what tripline sends), else the first number."""
    for name in ("phone", "Phone", "phoneNumber", "PhoneNumber"):
        if isinstance(data.get(name), str):
            return name
    for name, value in data.items():
        if isinstance(value, str) and _PHONE.match(value):
            return str(name)
    return "phone"


def remember_contact(emulator: Emulator, contact: dict[str, Any]) -> None:
    """An appended contact is dialled; one appended again (same id) is updated, not redialled."""
    key = f"{contact['contactListId']}/{contact['id']}"
    known = emulator.calls["contact"].get(key)
    if known is not None:
        known.extra["contact"] = contact
        return
    column = phone_column(contact["data"])
    emulator.place(
        "contact",
        key,
        call_id=str(contact["id"]),
        phone=str(contact["data"].get(column, "")),
        extra={"contact": contact, "column": column},
    )


def dialer_contact(call: PlacedCall, now: float) -> dict[str, Any]:
    """The DialerContact: callRecords stay {} until the result shows."""
    contact, column = call.extra["contact"], call.extra["column"]
    records, callable_number = {}, True
    if call.finished(now) and not call.canceled:  # a cancelled contact was never dialled
        records[column] = {"lastAttempt": iso(call.at(0.15)), "lastResult": call.wrapup_code}
        callable_number = call.wrapup_code != "ININ-OUTBOUND-SIT-UNCALLABLE"
    return {
        **contact,
        "callRecords": records,
        "phoneNumberStatus": {column: {"callable": callable_number}},
    }


async def contacts_bulk(request: web.Request) -> web.Response:
    """POST /api/v2/outbound/contactlists/{contactListId}/contacts/bulk ["<id>", …]."""
    if (gate := await _gate(request)) is not None:
        return gate
    body = await _json_body(request)
    if isinstance(body, web.Response):
        return body
    if not isinstance(body, list) or not body or not all(isinstance(i, str) for i in body):
        return _error(400, "body must be a non-empty list of contact ids", "bad.request")
    emulator = request.app[EMULATOR]
    list_id, now = request.match_info["contactListId"], emulator.clock()
    known = emulator.calls["contact"]
    return _json(
        [dialer_contact(known[f"{list_id}/{i}"], now) for i in body if f"{list_id}/{i}" in known]
    )
