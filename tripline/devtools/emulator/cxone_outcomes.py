"""NICE CXone call outcomes: completed contacts, the disposition catalogue, ending a contact."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tripline.devtools.emulator.outcomes import PlacedCall, iso, parse_iso
from tripline.devtools.emulator.state import EMULATOR, Emulator, _error, _gate

AGENT_ID = 7_000_001
"""The emulator's one agent."""
TOP_MAX = 10_000

_PLAYED: dict[str, tuple[str, int, int, int]] = {
    "answered": ("Contact Hung Up", 8, 95, 110),
    "no_answer": ("NoAnswer", 0, 0, 30),
    "busy": ("Busy", 0, 0, 5),
    "voicemail": ("Machine", 0, 0, 25),
    "failed": ("Error", 0, 0, 1),
}
"""What a PLACECALL script's contact looks like afterwards, by result: endReason,
inQueueSeconds, agentSeconds, totalDurationSeconds."""


def completed_contact(emulator: Emulator, call: PlacedCall) -> dict[str, Any]:
    """One of completedContacts[] (call-outcomes.md §3b)."""
    contact = int(call.id)
    if call.canceled_at is not None:
        waited = round(call.canceled_at - call.created)
        reason, queue, agent, total = "Abandoned", waited, 0, waited
    else:
        reason, queue, agent, total = _PLAYED[call.result]
    disposition = emulator.disposition_id(call.wrapup_code) if call.wrapup_code else 0
    return {
        "contactId": contact,
        "masterContactId": contact,
        "contactStartDate": iso(call.created),
        "isOutbound": True,
        "abandoned": call.canceled,
        "abandonSeconds": total if call.canceled else 0,
        "agentId": AGENT_ID if agent else 0,
        "agentSeconds": agent,
        "inQueueSeconds": queue,
        "totalDurationSeconds": total,
        "acwSeconds": 7 if agent else 0,
        "endReason": reason,
        "primaryDispositionId": 0 if call.canceled else disposition,
        "secondaryDispositionId": 0,
        "skillId": call.extra.get("skillId"),
        "toAddress": call.phone,
        "lastUpdateTime": iso(call.ended()),
    }


async def completed_contacts(request: web.Request) -> web.Response:
    """GET /incontactapi/services/{v}/contacts/completed?updatedSince&startDate&endDate&top&skip."""
    if (gate := await _gate(request)) is not None:
        return gate
    query = request.query
    bounds: dict[str, float | None] = {}
    for name in ("updatedSince", "startDate", "endDate"):
        bounds[name] = parse_iso(query[name]) if name in query else None
        if name in query and bounds[name] is None:
            return _error(400, f"{name} must be an ISO-8601 instant", "bad.request")
    try:
        top, skip = int(query.get("top", str(TOP_MAX))), int(query.get("skip", "0"))
    except ValueError:
        return _error(400, "top and skip must be integers", "bad.request")
    if not 1 <= top <= TOP_MAX or skip < 0:
        return _error(400, f"1 <= top <= {TOP_MAX} and skip >= 0", "bad.request")
    emulator = request.app[EMULATOR]
    now = emulator.clock()
    since, start, end = bounds["updatedSince"], bounds["startDate"], bounds["endDate"]
    done = sorted(
        (
            call
            for call in emulator.calls["cxone"].values()
            if call.finished(now)
            and (since is None or call.ended() >= since)
            and (start is None or call.created >= start)
            and (end is None or call.created < end)
        ),
        key=PlacedCall.ended,
    )
    return web.json_response(
        {
            "totalRecords": len(done),
            "lastPollTime": iso(now),
            "completedContacts": [
                completed_contact(emulator, call) for call in done[skip : skip + top]
            ],
        }
    )


async def dispositions(request: web.Request) -> web.Response:
    """GET /incontactapi/services/{v}/dispositions: one per wrap-up code used (and the default)."""
    if (gate := await _gate(request)) is not None:
        return gate
    emulator = request.app[EMULATOR]
    emulator.disposition_id(emulator.settings.wrapup_code)
    for call in emulator.calls["cxone"].values():
        if call.wrapup_code:
            emulator.disposition_id(call.wrapup_code)
    return web.json_response(
        {
            "totalRecords": len(emulator.dispositions),
            "dispositions": [
                {"dispositionId": number, "dispositionName": name, "isActive": True}
                for name, number in emulator.dispositions.items()
            ],
        }
    )


async def end_contact(request: web.Request) -> web.Response:
    """POST /incontactapi/services/{v}/contacts/{contactId}/end: before its result shows."""
    if (gate := await _gate(request)) is not None:
        return gate
    emulator = request.app[EMULATOR]
    cid = request.match_info["contactId"]
    call = emulator.calls["cxone"].get(cid)
    if call is None:
        return _error(404, f"contact {cid} not found", "not.found")
    now = emulator.clock()
    if call.finished(now):
        return _error(400, f"contact {cid} has already ended", "contact.already.ended")
    call.canceled_at = now
    return web.Response(status=202)
