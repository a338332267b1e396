"""The emulator plays call outcomes: each placed call's planned result shows after the delay."""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
from typing import Any
from urllib.parse import urlencode

import pytest
from aiohttp import web

from tests.conftest import AppThread, EmulatorHandle, http, wait_for
from tripline.devtools.emulator import TWILIO_TOKEN
from tripline.devtools.emulator.genesys_outcomes import _named_ids

T0 = 1_796_000_000.0  # 2026-11-30T00:53:20Z: the emulator's clock in these tests
DELAY = 5.0
QUEUE = "q-1"
INTERVAL = "2026-11-29T00:00:00.000Z/2026-12-01T00:00:00.000Z"
BEARER = {"Authorization": "Bearer test-token"}
ACCOUNT = "AC123"
BASIC = {
    "Authorization": "Basic " + base64.b64encode(f"{ACCOUNT}:{TWILIO_TOKEN}".encode()).decode(),
    "Content-Type": "application/x-www-form-urlencoded",
}
CXONE = "/incontactapi/services/v33.0"


class Clock:
    """The emulator's clock, wound on by the test."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(emulator: EmulatorHandle) -> Clock:
    emulator.state.tokens.add("test-token")
    emulator.state.clock = clock = Clock()
    settings(emulator, call_result_delay_seconds=DELAY)
    return clock


def settings(emulator: EmulatorHandle, **knobs: Any) -> dict[str, Any]:
    status, body = http("PUT", f"{emulator.url}/_emulator/settings", knobs)
    assert status == 200, body
    return dict(body)


def callback(emulator: EmulatorHandle, **extra: Any) -> str:
    body = {"callbackNumbers": ["+14155550100"], "routingData": {"queueId": QUEUE}, **extra}
    status, answer = http("POST", f"{emulator.url}/api/v2/conversations/callbacks", body, BEARER)
    assert status == 200, answer
    return str(answer["conversation"]["id"])


def query(emulator: EmulatorHandle, *ids: str, **extra: Any) -> tuple[int, Any]:
    predicates = [
        {"type": "dimension", "dimension": "conversationId", "operator": "matches", "value": i}
        for i in ids
    ]
    body: dict[str, Any] = {"interval": INTERVAL, "order": "asc", "orderBy": "conversationStart"}
    if ids:
        body["conversationFilters"] = [{"type": "or", "predicates": predicates}]
    url = f"{emulator.url}/api/v2/analytics/conversations/details/query"
    return http("POST", url, {**body, **extra}, BEARER)


def one(emulator: EmulatorHandle, cid: str) -> dict[str, Any]:
    status, body = query(emulator, cid)
    assert status == 200, body
    assert body["totalHits"] == 1
    (conv,) = body["conversations"]
    return dict(conv)


def by_purpose(conv: dict[str, Any], purpose: str) -> dict[str, Any]:
    (found,) = [p for p in conv["participants"] if p["purpose"] == purpose]
    return dict(found)


def segment_types(session: dict[str, Any]) -> list[str]:
    return [s["segmentType"] for s in session["segments"]]


def session(participant: dict[str, Any], media: str) -> dict[str, Any]:
    (found,) = [s for s in participant["sessions"] if s["mediaType"] == media]
    return dict(found)


# --- settings -----------------------------------------------------------------------------


def test_call_results_are_consumed_in_order_then_calls_are_answered(
    emulator: EmulatorHandle, clock: Clock
) -> None:
    knobs = settings(emulator, call_results=["busy", {"result": "no_answer", "wrapupCode": "X"}])
    assert knobs["call_results"] == ["busy", {"result": "no_answer", "wrapupCode": "X"}]
    ids = [callback(emulator) for _ in range(3)]
    calls = emulator.state.calls["callback"]
    assert [calls[i].result for i in ids] == ["busy", "no_answer", "answered"]
    assert [calls[i].wrapup_code for i in ids] == [
        "ININ-OUTBOUND-BUSY",
        "X",
        "tripline-resolved",
    ]
    assert settings(emulator)["call_results"] == []
    assert [c["result"] for c in http("GET", f"{emulator.url}/_emulator/calls")[1]["callback"]] == [
        "busy",
        "no_answer",
        "answered",
    ]
    assert clock.now == T0


def test_a_refused_callback_consumes_no_result(emulator: EmulatorHandle, clock: Clock) -> None:
    settings(emulator, call_results=["busy"])
    bad = {"callbackNumbers": ["+1"], "queueId": "q", "callbackScheduledTime": "tomorrow"}
    status, body = http("POST", f"{emulator.url}/api/v2/conversations/callbacks", bad, BEARER)
    assert status == 400
    assert "callbackScheduledTime" in body["message"]
    assert emulator.state.calls["callback"] == {}
    assert settings(emulator)["call_results"] == ["busy"]
    assert clock.now == T0


@pytest.mark.parametrize(
    "knobs",
    [
        pytest.param({"call_results": ["maybe"]}, id="unknown-result"),
        pytest.param({"call_results": [{"result": "hung"}]}, id="unknown-result-in-object"),
        pytest.param({"call_results": [{"wrapupCode": "X"}]}, id="object-without-result"),
        pytest.param({"call_results": [{"result": "busy", "code": "X"}]}, id="unknown-key"),
        pytest.param({"call_results": [{"result": "busy", "wrapupCode": ""}]}, id="empty-code"),
        pytest.param({"call_results": [{"result": "busy", "wrapupCode": 3}]}, id="code-not-str"),
        pytest.param({"call_results": [3]}, id="item-not-str-or-object"),
        pytest.param({"call_results": "busy"}, id="not-a-list"),
        pytest.param({"call_result_delay_seconds": -1}, id="negative-delay"),
        pytest.param({"call_result_delay_seconds": "2"}, id="delay-not-number"),
        pytest.param({"wrapup_code": ""}, id="empty-wrapup-code"),
    ],
)
def test_bad_outcome_settings_are_refused(emulator: EmulatorHandle, knobs: dict[str, Any]) -> None:
    status, _ = http("PUT", f"{emulator.url}/_emulator/settings", knobs)
    assert status == 400
    assert emulator.state.settings.call_results == []


def test_outcome_settings_defaults_and_types(emulator: EmulatorHandle) -> None:
    knobs = settings(emulator)
    assert knobs["call_results"] == []
    assert knobs["call_result_delay_seconds"] == 2.0
    assert knobs["wrapup_code"] == "tripline-resolved"
    knobs = settings(emulator, call_result_delay_seconds=1, call_results=[], wrapup_code="ok")
    assert (knobs["call_result_delay_seconds"], knobs["wrapup_code"]) == (1, "ok")


# --- Genesys callbacks: the details query -------------------------------------------------


def test_no_result_before_the_delay(emulator: EmulatorHandle, clock: Clock) -> None:
    cid = callback(emulator)
    clock.now = T0 + DELAY - 0.01
    conv = one(emulator, cid)
    assert "conversationEnd" not in conv
    assert conv["originatingDirection"] == "outbound"
    assert [p["purpose"] for p in conv["participants"]] == ["acd"]
    waiting = session(conv["participants"][0], "callback")
    assert segment_types(waiting) == ["interact"]
    assert waiting["segments"][0]["queueId"] == QUEUE
    assert "segmentEnd" not in waiting["segments"][0]


def test_answered_shape(emulator: EmulatorHandle, clock: Clock) -> None:
    cid = callback(emulator)
    clock.now = T0 + DELAY
    conv = one(emulator, cid)
    assert conv["conversationEnd"] == "2026-11-30T00:53:25.000Z"
    assert conv["conversationStart"] == "2026-11-30T00:53:20.000Z"
    assert [p["purpose"] for p in conv["participants"]] == ["acd", "agent", "customer"]
    agent = by_purpose(conv, "agent")
    assert agent["userId"]
    taken = session(agent, "callback")
    assert segment_types(taken) == ["alert", "interact", "wrapup"]
    assert taken["segments"][-1]["wrapUpCode"] == "tripline-resolved"
    assert segment_types(session(agent, "voice")) == ["interact"]
    leg = session(by_purpose(conv, "customer"), "voice")
    assert segment_types(leg) == ["dialing", "contacting", "interact"]
    assert "dispositionName" not in leg


@pytest.mark.parametrize(
    ("result", "q850", "code"),
    [
        pytest.param("no_answer", 19, "ININ-OUTBOUND-NO-ANSWER", id="no-answer"),
        pytest.param("busy", 17, "ININ-OUTBOUND-BUSY", id="busy"),
    ],
)
def test_not_answered_shape(
    emulator: EmulatorHandle, clock: Clock, result: str, q850: int, code: str
) -> None:
    settings(emulator, call_results=[result])
    cid = callback(emulator)
    assert "conversationEnd" not in one(emulator, cid)
    clock.now = T0 + DELAY + 1
    conv = one(emulator, cid)
    assert "conversationEnd" in conv
    taken = session(by_purpose(conv, "agent"), "callback")
    assert segment_types(taken) == ["alert", "interact", "wrapup"]
    assert taken["segments"][-1]["wrapUpCode"] == code
    assert [s["mediaType"] for s in by_purpose(conv, "agent")["sessions"]] == ["callback"]
    leg = session(by_purpose(conv, "customer"), "voice")
    assert segment_types(leg) == ["dialing", "contacting"]
    last = leg["segments"][-1]
    assert (last["disconnectType"], last["q850ResponseCodes"]) == ("endpoint", [q850])


def test_voicemail_shape(emulator: EmulatorHandle, clock: Clock) -> None:
    settings(emulator, call_results=["voicemail"])
    cid = callback(emulator)
    clock.now = T0 + DELAY
    conv = one(emulator, cid)
    leg = session(by_purpose(conv, "customer"), "voice")
    assert leg["dispositionName"] == "disposition.classification.callable.machine"
    assert "interact" in segment_types(leg)
    wrapup = session(by_purpose(conv, "agent"), "callback")["segments"][-1]
    assert wrapup["wrapUpCode"] == "ININ-OUTBOUND-MACHINE"


def test_failed_shape(emulator: EmulatorHandle, clock: Clock) -> None:
    settings(emulator, call_results=["failed"])
    cid = callback(emulator)
    clock.now = T0 + DELAY
    conv = one(emulator, cid)
    leg = session(by_purpose(conv, "customer"), "voice")
    assert "interact" not in segment_types(leg)
    assert leg["segments"][-1]["disconnectType"] == "error"
    assert leg["segments"][-1]["errorCode"] == "error.ininedgecontrol.connection.failed"
    wrapup = session(by_purpose(conv, "agent"), "callback")["segments"][-1]
    assert wrapup["wrapUpCode"] == "ININ-OUTBOUND-DISCONNECT"


def test_a_result_s_own_wrapup_code_replaces_the_agent_s(
    emulator: EmulatorHandle, clock: Clock
) -> None:
    settings(
        emulator,
        wrapup_code="site-ok",
        call_results=[{"result": "no_answer", "wrapupCode": "custom-na"}, "answered"],
    )
    first, second = callback(emulator), callback(emulator)
    clock.now = T0 + DELAY
    codes = [
        session(by_purpose(one(emulator, cid), "agent"), "callback")["segments"][-1]["wrapUpCode"]
        for cid in (first, second)
    ]
    assert codes == ["custom-na", "site-ok"]


def test_a_scheduled_callback_shows_its_result_after_the_scheduled_time(
    emulator: EmulatorHandle, clock: Clock
) -> None:
    cid = callback(emulator, callbackScheduledTime="2026-11-30T00:54:20.000Z")  # T0 + 60 s
    clock.now = T0 + DELAY + 1
    conv = one(emulator, cid)
    assert "conversationEnd" not in conv
    assert segment_types(session(conv["participants"][0], "callback")) == ["scheduled"]
    live = http("GET", f"{emulator.url}/api/v2/conversations/callbacks/{cid}", None, BEARER)[1]
    customer = by_purpose(live, "customer")
    assert (customer["state"], customer["callbackScheduledTime"]) == (
        "scheduled",
        "2026-11-30T00:54:20.000Z",
    )
    clock.now = T0 + 60 + DELAY
    conv = one(emulator, cid)
    assert conv["conversationEnd"] == "2026-11-30T00:54:25.000Z"
    acd = session(by_purpose(conv, "acd"), "callback")
    assert segment_types(acd) == ["scheduled", "interact"]
    assert acd["callbackScheduledTime"] == "2026-11-30T00:54:20.000Z"


def test_details_query_filters_pages_and_refuses(emulator: EmulatorHandle, clock: Clock) -> None:
    ids = [callback(emulator) for _ in range(3)]
    status, body = query(emulator, ids[0], ids[2])
    assert status == 200
    assert [c["conversationId"] for c in body["conversations"]] == [ids[0], ids[2]]
    status, body = query(emulator, *ids, paging={"pageSize": 2, "pageNumber": 2})
    assert (body["totalHits"], len(body["conversations"])) == (3, 1)
    status, body = query(emulator, "nope")
    assert (status, body["totalHits"], body["conversations"]) == (200, 0, [])
    url = f"{emulator.url}/api/v2/analytics/conversations/details/query"
    assert http("POST", url, {"paging": {"pageSize": 10}}, BEARER)[0] == 400
    assert query(emulator, ids[0], paging={"pageSize": 101})[0] == 400
    assert query(emulator, ids[0], interval="2026-11-30T00:00:00Z")[0] == 400
    assert query(emulator, interval="2027-01-01T00:00:00Z/2027-01-02T00:00:00Z")[1] == {
        "conversations": [],
        "totalHits": 0,
    }
    assert http("POST", url, {"interval": INTERVAL})[0] == 401
    assert clock.now == T0


def _ids(*ids: str, op: str = "matches", dimension: str = "conversationId") -> dict[str, Any]:
    return {
        "type": "or",
        "predicates": [
            {"type": "dimension", "dimension": dimension, "operator": op, "value": i} for i in ids
        ],
    }


@pytest.mark.parametrize(
    ("filters", "named"),
    [
        pytest.param([], None, id="no-filter"),
        pytest.param([_ids("a", "b", "a")], ["a", "b"], id="one-or-of-ids"),
        pytest.param([_ids("a", "b"), _ids("b", "c")], ["b"], id="two-narrow"),
        pytest.param([_ids("a", dimension="mediaType")], None, id="other-dimension"),
        pytest.param([_ids("a", op="exists")], None, id="other-operator"),
        pytest.param([{**_ids("a"), "type": "and"}], None, id="an-and-is-not-read"),
        pytest.param([{**_ids("a"), "clauses": [_ids("b")]}], None, id="with-clauses"),
        pytest.param(
            [_ids("a"), {"type": "or", "predicates": [_ids("x")["predicates"][0]]}],
            [],
            id="disjoint",
        ),
    ],
)
def test_the_ids_a_details_query_names(filters: list[dict[str, Any]], named: Any) -> None:
    assert _named_ids(filters) == named


def test_a_named_id_query_with_another_filter_still_applies_it(
    emulator: EmulatorHandle, clock: Clock
) -> None:
    ids = [callback(emulator) for _ in range(3)]
    media = _ids("no-such-media", dimension="originatingDirection")
    body = {"conversationFilters": [_ids(ids[0], ids[1]), media]}
    status, found = query(emulator, **body)
    assert (status, found["totalHits"]) == (200, 0)
    body = {"conversationFilters": [_ids(ids[0], ids[1]), _ids(ids[1], ids[2])]}
    status, found = query(emulator, **body)
    assert [c["conversationId"] for c in found["conversations"]] == [ids[1]]
    assert clock.now == T0


# --- Genesys callbacks: live state and cancel ---------------------------------------------


def test_cancel_before_the_result(emulator: EmulatorHandle, clock: Clock) -> None:
    cid = callback(emulator)
    path = f"{emulator.url}/api/v2/conversations/callbacks/{cid}"
    live = http("GET", path, None, BEARER)[1]
    assert by_purpose(live, "customer")["state"] == "connected"
    assert by_purpose(live, "customer")["callbackNumbers"] == ["+14155550100"]
    clock.now = T0 + 1
    status, body = http("PATCH", path, {"state": "disconnected"}, BEARER)
    assert status == 200
    assert body["id"] == cid
    assert {p["state"] for p in body["participants"]} == {"disconnected"}
    clock.now = T0 + DELAY + 10  # the result it would have had never shows
    conv = one(emulator, cid)
    assert conv["conversationEnd"] == "2026-11-30T00:53:21.000Z"
    assert [p["purpose"] for p in conv["participants"]] == ["acd"]
    assert session(conv["participants"][0], "callback")["segments"][-1]["disconnectType"] == (
        "client"
    )
    status, body = http("PATCH", path, {"state": "disconnected"}, BEARER)
    assert (status, body["code"]) == (400, "conversation.already.disconnected")


def test_cancel_refusals(emulator: EmulatorHandle, clock: Clock) -> None:
    cid = callback(emulator)
    path = f"{emulator.url}/api/v2/conversations/callbacks"
    assert http("PATCH", f"{path}/nope", {"state": "disconnected"}, BEARER)[0] == 404
    assert http("GET", f"{path}/nope", None, BEARER)[0] == 404
    assert http("PATCH", f"{path}/{cid}", {"state": "connected"}, BEARER)[0] == 400
    assert http("PATCH", f"{path}/{cid}", {"state": "disconnected"})[0] == 401
    clock.now = T0 + DELAY
    status, body = http("PATCH", f"{path}/{cid}", {"state": "disconnected"}, BEARER)
    assert (status, body["code"]) == (400, "conversation.already.disconnected")
    live = http("GET", f"{path}/{cid}", None, BEARER)[1]
    assert by_purpose(live, "customer")["state"] == "disconnected"
    assert by_purpose(live, "agent")["wrapup"]["code"] == "tripline-resolved"


# --- Genesys campaign contacts --------------------------------------------------------------


def test_campaign_contacts_show_their_last_result(emulator: EmulatorHandle, clock: Clock) -> None:
    settings(
        emulator,
        call_results=["answered", "no_answer", "failed", {"result": "busy", "wrapupCode": "W"}],
    )
    contacts = [
        {"id": f"tl-{n}", "callable": True, "data": {"phone": f"+1415555010{n}", "name": "N"}}
        for n in range(4)
    ]
    base = f"{emulator.url}/api/v2/outbound/contactlists/L1/contacts"
    assert http("POST", base, contacts, BEARER)[0] == 200
    assert http("POST", base, contacts[:1], BEARER)[0] == 200  # updated, not dialled again
    assert len(emulator.state.calls["contact"]) == 4
    ids = [c["id"] for c in contacts]
    status, before = http("POST", f"{base}/bulk", [*ids, "unknown"], BEARER)
    assert status == 200
    assert [c["id"] for c in before] == ids
    assert {str(c["callRecords"]) for c in before} == {"{}"}
    clock.now = T0 + DELAY
    after = http("POST", f"{base}/bulk", ids, BEARER)[1]
    assert [c["callRecords"]["phone"]["lastResult"] for c in after] == [
        "tripline-resolved",
        "ININ-OUTBOUND-NO-ANSWER",
        "ININ-OUTBOUND-SIT-UNCALLABLE",
        "W",
    ]
    assert after[0]["contactListId"] == "L1"
    assert after[0]["data"] == contacts[0]["data"]
    assert after[0]["callRecords"]["phone"]["lastAttempt"].startswith("2026-11-30T00:53:2")
    assert [c["phoneNumberStatus"]["phone"]["callable"] for c in after] == [
        True,
        True,
        False,
        True,
    ]
    assert (
        http("POST", f"{emulator.url}/api/v2/outbound/contactlists/L2/contacts/bulk", ids, BEARER)[
            1
        ]
        == []
    )
    assert http("POST", f"{base}/bulk", {"ids": ids}, BEARER)[0] == 400


def test_a_campaign_contact_made_uncallable_before_it_was_dialled_is_cancelled(
    emulator: EmulatorHandle, clock: Clock
) -> None:
    base = f"{emulator.url}/api/v2/outbound/contactlists/L1/contacts"
    contacts = [
        {"id": f"tl-{n}", "callable": True, "data": {"phone": "+14155550100"}} for n in (0, 1)
    ]
    assert http("POST", base, contacts, BEARER)[0] == 200
    status, answer = http("PUT", f"{base}/tl-0", {"id": "tl-0", "callable": False}, BEARER)
    assert status == 200
    assert answer["callable"] is False
    assert http("PUT", f"{base}/nobody", {"callable": False}, BEARER)[0] == 404
    assert http("PUT", f"{base}/tl-1", {"callable": "no"}, BEARER)[0] == 400
    clock.now = T0 + DELAY
    after = http("POST", f"{base}/bulk", ["tl-0", "tl-1"], BEARER)[1]
    assert [bool(c["callRecords"]) for c in after] == [False, True]  # the cancelled one never rang
    assert emulator.state.calls["contact"]["L1/tl-0"].canceled


# --- Twilio -------------------------------------------------------------------------------


class Receiver:
    """A little aiohttp app that takes status callbacks."""

    def __init__(self) -> None:
        self.got: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        app = web.Application()
        app.router.add_route("*", "/status", self._take)
        self.app = AppThread(app)
        self.url = f"{self.app.url}/status?site=7"

    async def _take(self, request: web.Request) -> web.Response:
        form = await request.post()
        with self._lock:
            self.got.append(
                {
                    "method": request.method,
                    "signature": request.headers.get("X-Twilio-Signature"),
                    "params": {k: str(v) for k, v in form.items()},
                    "query": dict(request.query),
                }
            )
        return web.Response(text="ok")

    def received(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.got)


@pytest.fixture
def receiver() -> Any:
    found = Receiver()
    yield found
    found.app.stop()


def place_twilio(emulator: EmulatorHandle, **form: str | list[str]) -> str:
    fields = {"To": "+14155550100", "From": "+14155550199", "Url": "http://x/twiml", **form}
    body = urlencode(fields, doseq=True).encode()
    url = f"{emulator.url}/2010-04-01/Accounts/{ACCOUNT}/Calls.json"
    status, answer = http("POST", url, body, BASIC)
    assert status == 201, answer
    return str(answer["sid"])


def expected_signature(url: str, params: dict[str, str]) -> str:
    message = url + "".join(name + params[name] for name in sorted(params))
    digest = hmac.new(TWILIO_TOKEN.encode(), message.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


@pytest.mark.parametrize(
    ("result", "amd", "status", "answered_by"),
    [
        pytest.param("answered", "", "completed", None, id="answered"),
        pytest.param("answered", "Enable", "completed", "human", id="answered-amd"),
        pytest.param("voicemail", "", "completed", None, id="voicemail-without-amd"),
        pytest.param("voicemail", "Enable", "completed", "machine_start", id="voicemail-amd"),
        pytest.param(
            "voicemail", "DetectMessageEnd", "completed", "machine_end_beep", id="voicemail-end"
        ),
        pytest.param("no_answer", "Enable", "no-answer", None, id="no-answer"),
        pytest.param("busy", "", "busy", None, id="busy"),
        pytest.param("failed", "", "failed", None, id="failed"),
    ],
)
def test_twilio_status_callback_is_signed(  # noqa: PLR0917 - fixtures and parameters
    emulator: EmulatorHandle,
    clock: Clock,
    receiver: Receiver,
    result: str,
    amd: str,
    status: str,
    answered_by: str | None,
) -> None:
    settings(emulator, call_results=[result])
    extra = {"MachineDetection": amd} if amd else {}
    sid = place_twilio(emulator, StatusCallback=receiver.url, **extra)
    resource = f"{emulator.url}/2010-04-01/Accounts/{ACCOUNT}/Calls/{sid}.json"
    assert http("GET", resource, None, BASIC)[1]["status"] == "queued"
    clock.now = T0 + DELAY
    (got,) = wait_for(receiver.received, timeout=5)
    params = got["params"]
    assert got["method"] == "POST"
    assert got["signature"] == expected_signature(receiver.url, params)
    assert params["CallSid"] == sid
    assert params["AccountSid"] == ACCOUNT
    assert (params["To"], params["From"]) == ("+14155550100", "+14155550199")
    assert (params["Direction"], params["ApiVersion"]) == ("outbound-api", "2010-04-01")
    assert params["CallbackSource"] == "call-progress-events"
    assert params["SequenceNumber"] == "0"
    assert params["Timestamp"].endswith("+0000")
    assert params["CallStatus"] == status
    assert ("CallDuration" in params) == (status == "completed")
    assert params.get("AnsweredBy") == answered_by
    call = http("GET", resource, None, BASIC)[1]
    assert (call["sid"], call["status"], call["answered_by"]) == (sid, status, answered_by)
    assert (call["to"], call["from"]) == ("+14155550100", "+14155550199")


def test_twilio_events_asked_for_come_in_sequence(
    emulator: EmulatorHandle, clock: Clock, receiver: Receiver
) -> None:
    place_twilio(
        emulator,
        StatusCallback=receiver.url,
        StatusCallbackEvent=["initiated", "answered", "completed"],
    )
    clock.now = T0 + DELAY
    got = wait_for(lambda: len(receiver.received()) == 3 and receiver.received(), timeout=5)
    seen = [(g["params"]["CallStatus"], g["params"]["SequenceNumber"]) for g in got]
    assert seen == [("initiated", "0"), ("in-progress", "1"), ("completed", "2")]
    for g in got:
        assert g["signature"] == expected_signature(receiver.url, g["params"])


def test_twilio_get_status_callback_signs_the_url_with_its_query(
    emulator: EmulatorHandle, clock: Clock, receiver: Receiver
) -> None:
    settings(emulator, call_results=["busy"])
    place_twilio(emulator, StatusCallback=receiver.url, StatusCallbackMethod="GET")
    clock.now = T0 + DELAY
    (got,) = wait_for(receiver.received, timeout=5)
    assert (got["method"], got["params"]) == ("GET", {})
    assert got["query"]["site"] == "7"
    assert got["query"]["CallStatus"] == "busy"
    sent = {k: v for k, v in got["query"].items() if k != "site"}
    assert got["signature"] == expected_signature(f"{receiver.url}&{urlencode(sent)}", {})


def test_twilio_cancel_before_the_result(
    emulator: EmulatorHandle, clock: Clock, receiver: Receiver
) -> None:
    sid = place_twilio(emulator, StatusCallback=receiver.url)
    resource = f"{emulator.url}/2010-04-01/Accounts/{ACCOUNT}/Calls/{sid}.json"
    clock.now = T0 + DELAY * 0.75
    assert http("GET", resource, None, BASIC)[1]["status"] == "ringing"
    status, call = http("POST", resource, b"Status=canceled", BASIC)
    assert (status, call["status"]) == (200, "canceled")
    (got,) = wait_for(receiver.received, timeout=5)
    assert got["params"]["CallStatus"] == "canceled"
    assert got["signature"] == expected_signature(receiver.url, got["params"])
    clock.now = T0 + DELAY * 2
    assert http("GET", resource, None, BASIC)[1]["status"] == "canceled"
    assert http("POST", resource, b"Status=canceled", BASIC)[0] == 400
    assert len(receiver.received()) == 1


def test_twilio_call_resource_refusals(emulator: EmulatorHandle, clock: Clock) -> None:
    sid = place_twilio(emulator)
    resource = f"{emulator.url}/2010-04-01/Accounts/{ACCOUNT}/Calls"
    assert http("GET", f"{resource}/CAnope.json", None, BASIC)[0] == 404
    assert http("GET", f"{resource}/{sid}.json")[0] == 401
    assert http("POST", f"{resource}/{sid}.json", b"Status=paused", BASIC)[0] == 400
    status, call = http("POST", f"{resource}/{sid}.json", b"Status=completed", BASIC)
    assert (status, call["status"]) == (200, "canceled")
    assert clock.now == T0
    bad = urlencode({"To": "+1", "From": "+2", "Url": "u", "MachineDetection": "Yes"}).encode()
    assert http("POST", f"{resource}.json", bad, BASIC)[0] == 400


# --- CXone --------------------------------------------------------------------------------


def start_script(emulator: EmulatorHandle, phone: str) -> int:
    body = {"skillId": 4242, "parameters": f"{phone}|S-1|temp_high|ref-1"}
    url = f"{emulator.url}{CXONE}/scripts/77/start"
    status, answer = http("POST", url, body, BEARER)
    assert status == 202, answer
    return int(answer["contactId"])


def test_cxone_completed_contacts_and_dispositions(emulator: EmulatorHandle, clock: Clock) -> None:
    results = ["answered", "no_answer", "busy", "voicemail", "failed", "answered"]
    settings(emulator, call_results=results, wrapup_code="site-ok")
    ids = [start_script(emulator, f"+1415555010{n}") for n in range(len(results))]
    completed = f"{emulator.url}{CXONE}/contacts/completed"
    status, before = http("GET", completed, None, BEARER)
    assert (status, before["totalRecords"], before["completedContacts"]) == (200, 0, [])
    clock.now = T0 + 1
    assert http("POST", f"{emulator.url}{CXONE}/contacts/{ids[-1]}/end", None, BEARER)[0] == 202
    clock.now = T0 + DELAY + 1
    body = http("GET", completed, None, BEARER)[1]
    assert body["lastPollTime"] == "2026-11-30T00:53:26.000Z"
    got = {c["contactId"]: c for c in body["completedContacts"]}
    assert sorted(got) == sorted(ids)
    answered = got[ids[0]]
    assert (answered["abandoned"], answered["endReason"]) == (False, "Contact Hung Up")
    assert answered["agentSeconds"] > 0
    assert answered["isOutbound"] is True
    assert answered["toAddress"] == "+14155550100"
    assert answered["masterContactId"] == ids[0]
    reasons = [(got[i]["endReason"], got[i]["agentSeconds"]) for i in ids[1:5]]
    assert reasons == [("NoAnswer", 0), ("Busy", 0), ("Machine", 0), ("Error", 0)]
    cancelled = got[ids[-1]]
    assert (cancelled["abandoned"], cancelled["endReason"]) == (True, "Abandoned")
    catalogue = http("GET", f"{emulator.url}{CXONE}/dispositions", None, BEARER)[1]
    names = {d["dispositionName"]: d["dispositionId"] for d in catalogue["dispositions"]}
    assert names["site-ok"] == answered["primaryDispositionId"]
    assert all(d["isActive"] for d in catalogue["dispositions"])
    assert answered["lastUpdateTime"] == "2026-11-30T00:53:25.000Z"
    assert cancelled["lastUpdateTime"] == "2026-11-30T00:53:21.000Z"
    # Incremental: nothing updated since the last poll.
    since = http("GET", f"{completed}?updatedSince={body['lastPollTime']}", None, BEARER)[1]
    assert since["completedContacts"] == []
    paged = http("GET", f"{completed}?top=2&skip=1", None, BEARER)[1]
    assert (paged["totalRecords"], len(paged["completedContacts"])) == (6, 2)


def test_cxone_end_refusals(emulator: EmulatorHandle, clock: Clock) -> None:
    cid = start_script(emulator, "+14155550100")
    base = f"{emulator.url}{CXONE}/contacts"
    assert http("POST", f"{base}/999/end", None, BEARER)[0] == 404
    clock.now = T0 + DELAY
    assert http("POST", f"{base}/{cid}/end", None, BEARER)[0] == 400
    assert http("GET", f"{base}/completed?updatedSince=yesterday", None, BEARER)[0] == 400
    assert http("GET", f"{base}/completed?top=0", None, BEARER)[0] == 400


# --- customers' contacts --------------------------------------------------------------------


def test_demo_customers_with_a_ladder(emulator: EmulatorHandle) -> None:
    body = http("GET", f"{emulator.url}/api/v1/customers/CUST-DEMO-3")[1]
    ladder = body["contacts"]
    assert [c["order"] for c in ladder] == [1, 2]
    assert ladder[0]["phone"] == body["phone"]
    assert ladder[1]["role"] == "site manager"
    assert ladder[1]["phone"] != body["phone"]
    assert "contacts" not in http("GET", f"{emulator.url}/api/v1/customers/CUST-DEMO-1")[1]


def test_put_customer_contacts(emulator: EmulatorHandle) -> None:
    contacts = [
        {"name": "Ann", "phone": "+14155550100", "order": 1, "callConsent": True},
        {
            "name": "Bob",
            "phone": "+14155550101",
            "role": "manager",
            "order": 2,
            "callConsent": False,
            "timezone": "America/Los_Angeles",
        },
    ]
    url = f"{emulator.url}/_emulator/customers/C-LADDER"
    assert http("PUT", url, {"name": "L", "phone": "+1", "contacts": contacts})[0] == 200
    assert http("GET", f"{emulator.url}/api/v1/customers/C-LADDER")[1]["contacts"] == contacts


@pytest.mark.parametrize(
    "contacts",
    [
        pytest.param({"name": "A"}, id="not-a-list"),
        pytest.param(["A"], id="item-not-object"),
        pytest.param([{"phone": "+1", "order": 1, "callConsent": True}], id="name-missing"),
        pytest.param([{"name": "A", "phone": 1, "order": 1, "callConsent": True}], id="phone-int"),
        pytest.param([{"name": "A", "phone": "+1", "callConsent": True}], id="order-missing"),
        pytest.param(
            [{"name": "A", "phone": "+1", "order": True, "callConsent": True}], id="order-bool"
        ),
        pytest.param([{"name": "A", "phone": "+1", "order": 1, "callConsent": 1}], id="consent"),
        pytest.param(
            [{"name": "A", "phone": "+1", "order": 1, "callConsent": True, "role": 2}], id="role"
        ),
        pytest.param(
            [{"name": "A", "phone": "+1", "order": 1, "callConsent": True, "timezone": None}],
            id="timezone",
        ),
    ],
)
def test_put_customer_refuses_bad_contacts(emulator: EmulatorHandle, contacts: Any) -> None:
    url = f"{emulator.url}/_emulator/customers/C-BAD"
    assert http("PUT", url, {"name": "B", "contacts": contacts})[0] == 400
    assert "C-BAD" not in emulator.state.customers
