"""Genesys analytics: a callback conversation as the details query shows it, played by result.

The tree (call-outcomes.md §1a): an `acd` participant whose `callback` session waits in the
queue; once an agent took it, an `agent` participant whose `callback` session goes alert →
interact → wrapup (`wrapUpCode`), and the `customer` participant's `voice` session dialing →
contacting (→ interact when answered). Segments are laid out between the time the callback
is worked and the time its result shows, in the proportions of a short real call.
"""

from __future__ import annotations

import uuid
from typing import Any

from tripline.devtools.emulator.outcomes import PlacedCall, iso

AGENT_USER_ID = "5e0b8c2a-7a51-4c0e-9d59-0e3d1a2b3c4d"
"""The emulator's one agent: every taken callback is taken by them."""
AGENT_NAME = "Emulated Agent"
MACHINE = "disposition.classification.callable.machine"
FAILED_CONNECTION = "error.ininedgecontrol.connection.failed"
Q850_NO_ANSWER, Q850_BUSY = 19, 17
SIP_NO_ANSWER, SIP_BUSY = 480, 486


def conversation(call: PlacedCall, now: float) -> dict[str, Any]:
    """The callback's AnalyticsConversation at `now`.

    Args:
        call: A placed Genesys callback.
        now: The emulator's clock.

    Returns:
        {conversationId, conversationStart, conversationEnd?, originatingDirection,
        participants}: conversationEnd only once it finished (result shown or cancelled).
    """
    body: dict[str, Any] = {
        "conversationId": call.id,
        "conversationStart": iso(call.created),
        "originatingDirection": "outbound",
    }
    if call.canceled_at is not None:
        body["conversationEnd"] = iso(call.canceled_at)
        body["participants"] = [_acd(call, now, call.canceled_at, "client")]
    elif now < call.visible_at:
        body["participants"] = [_acd(call, now, None, "")]
    else:
        body["conversationEnd"] = iso(call.visible_at)
        body["participants"] = [
            _acd(call, now, call.at(0.10), "transfer"),
            _agent(call),
            _customer(call),
        ]
    return body


def participant_id(call: PlacedCall, purpose: str) -> str:
    """A participant's id: stable for the call and its purpose."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{call.id}/{purpose}"))


def _session_id(call: PlacedCall, name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{call.id}/session/{name}"))


def _segment(kind: str, start: float, end: float | None, **fields: Any) -> dict[str, Any]:  # noqa: ANN401
    segment: dict[str, Any] = {"segmentStart": iso(start)}
    if end is not None:
        segment["segmentEnd"] = iso(end)
    return {**segment, "segmentType": kind, **fields}


def _callback_session(
    call: PlacedCall, name: str, segments: list[dict[str, Any]]
) -> dict[str, Any]:
    session: dict[str, Any] = {
        "sessionId": _session_id(call, name),
        "mediaType": "callback",
        "direction": "outbound",
        "callbackNumbers": call.extra.get("callbackNumbers", [call.phone]),
    }
    if call.extra.get("callbackScheduledTime"):
        session["callbackScheduledTime"] = iso(call.starts)
    return {**session, "segments": segments}


def _acd(call: PlacedCall, now: float, end: float | None, disconnect: str) -> dict[str, Any]:
    """The queue's participant: scheduled (when it was), then waiting; ended by `disconnect`."""
    queue = call.extra.get("queueId")
    segments = []
    if call.starts > call.created:
        until = min(call.starts, end) if end is not None else None
        if until is None and now >= call.starts:
            until = call.starts
        segments.append(_segment("scheduled", call.created, until, queueId=queue))
    if (end is None and now >= call.starts) or (end is not None and end > call.starts):
        segments.append(_segment("interact", call.starts, end, queueId=queue))
    if end is not None:
        segments[-1]["disconnectType"] = disconnect
    return {
        "participantId": participant_id(call, "acd"),
        "participantName": "Tripline Queue",
        "purpose": "acd",
        "sessions": [_callback_session(call, "acd", segments)],
    }


def _agent(call: PlacedCall) -> dict[str, Any]:
    """The agent who took the callback, dialled, and wrapped up."""
    queue = call.extra.get("queueId")
    wrapup = _segment("wrapup", call.at(0.85), call.at(1.0), queueId=queue)
    if call.wrapup_code:
        wrapup["wrapUpCode"] = call.wrapup_code
    sessions = [
        _callback_session(
            call,
            "agent",
            [
                _segment("alert", call.at(0.10), call.at(0.15), queueId=queue),
                _segment("interact", call.at(0.15), call.at(0.85), queueId=queue),
                wrapup,
            ],
        )
    ]
    if call.result == "answered":
        sessions.append(
            {
                "sessionId": _session_id(call, "agent-voice"),
                "mediaType": "voice",
                "direction": "outbound",
                "segments": [
                    _segment(
                        "interact",
                        call.at(0.30),
                        call.at(0.80),
                        queueId=queue,
                        disconnectType="peer",
                    )
                ],
            }
        )
    return {
        "participantId": participant_id(call, "agent"),
        "participantName": AGENT_NAME,
        "purpose": "agent",
        "userId": AGENT_USER_ID,
        "sessions": sessions,
    }


def _customer(call: PlacedCall) -> dict[str, Any]:
    """The customer's voice leg: dialled, rung, and (answered, voicemail) talked to."""
    dialing = _segment("dialing", call.at(0.15), call.at(0.20))
    session: dict[str, Any] = {
        "sessionId": _session_id(call, "customer-voice"),
        "mediaType": "voice",
        "direction": "outbound",
        "dnis": f"tel:{call.phone}",
    }
    match call.result:
        case "answered" | "voicemail":
            segments = [
                dialing,
                _segment("contacting", call.at(0.20), call.at(0.30)),
                _segment("interact", call.at(0.30), call.at(0.80), disconnectType="endpoint"),
            ]
            if call.result == "voicemail":
                session["dispositionName"] = MACHINE
        case "no_answer" | "busy":
            busy = call.result == "busy"
            segments = [
                dialing,
                _segment(
                    "contacting",
                    call.at(0.20),
                    call.at(0.25 if busy else 0.80),
                    disconnectType="endpoint",
                    q850ResponseCodes=[Q850_BUSY if busy else Q850_NO_ANSWER],
                    sipResponseCodes=[SIP_BUSY if busy else SIP_NO_ANSWER],
                ),
            ]
        case _:  # failed
            segments = [{**dialing, "disconnectType": "error", "errorCode": FAILED_CONNECTION}]
    return {
        "participantId": participant_id(call, "customer"),
        "participantName": "Customer",
        "purpose": "customer",
        "sessions": [{**session, "segments": segments}],
    }
