"""Vendor payloads to Evidence: every mapping row, the shapes of the reference, and junk.

Genesys conversations are built like the analytics details query's `conversations[]` (reference
§1a: an acd participant holding the callback, an agent whose callback session goes alert ->
interact -> wrapup, the customer's voice session dialing -> contacting -> interact); campaign
contacts like DialerContact (§1d); Twilio forms like status callbacks (§2); CXone items like
`completedContacts[]` (§3b).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tripline.adapters.backends.outcomes import (
    DIALER_CODES,
    cxone_completed,
    genesys_contact,
    genesys_conversation,
    genesys_query_body,
    twilio_sequence,
    twilio_status,
)
from tripline.pipeline.reach import CallResult, Evidence, ResultReason, WrapupCodes

R = ResultReason
REACHED = CallResult.REACHED
NR = CallResult.NOT_REACHED

# --- Genesys conversation builders ---------------------------------------------------------


def seg(kind: str, **extra: Any) -> dict[str, Any]:
    return {"segmentType": kind, "segmentStart": "2026-12-01T10:00:00.000Z", **extra}


def session(media: str, *segments: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"sessionId": "s", "mediaType": media, "segments": list(segments), **extra}


def party(purpose: str, *sessions: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"participantId": "p", "purpose": purpose, "sessions": list(sessions), **extra}


def conversation(*participants: dict[str, Any], ended: bool = True) -> dict[str, Any]:
    conv: dict[str, Any] = {
        "conversationId": "c-1",
        "conversationStart": "2026-12-01T10:00:00.000Z",
        "originatingDirection": "outbound",
        "participants": list(participants),
    }
    if ended:
        conv["conversationEnd"] = "2026-12-01T10:05:00.000Z"
    return conv


QUEUE = party("acd", session("callback", seg("interact", queueId="q")))


def agent(*, wrapup: str | None = "wc-1", interacted: bool = True) -> dict[str, Any]:
    segments = [seg("alert")]
    if interacted:
        segments.append(seg("interact"))
    if wrapup is not None:
        segments.append(seg("wrapup", wrapUpCode=wrapup))
    return party("agent", session("callback", *segments), userId="u-1")


def customer(*last: dict[str, Any], purpose: str = "customer", **extra: Any) -> dict[str, Any]:
    return party(purpose, session("voice", seg("dialing"), seg("contacting"), *last, **extra))


ANSWERED = seg("interact")


def failed_dial(**extra: Any) -> dict[str, Any]:
    return seg("contacting", **extra)


@pytest.mark.parametrize(
    ("conv", "evidence"),
    [
        # Not final yet.
        pytest.param(conversation(QUEUE, ended=False), None, id="ongoing-in-queue"),
        pytest.param(
            conversation(QUEUE, agent(), customer(ANSWERED), ended=False),
            None,
            id="ongoing-talking",
        ),
        pytest.param(
            conversation(QUEUE, agent(wrapup=None), customer(ANSWERED)),
            None,
            id="ended-wrapup-pending",
        ),
        pytest.param(
            conversation(QUEUE, agent(wrapup=""), customer(ANSWERED)),
            None,
            id="ended-empty-wrapup-code-is-pending",
        ),
        # Reached.
        pytest.param(
            conversation(QUEUE, agent(), customer(ANSWERED)),
            Evidence(REACHED, "", "wc-1"),
            id="reached",
        ),
        pytest.param(
            conversation(QUEUE, agent(), customer(ANSWERED, purpose="external")),
            Evidence(REACHED, "", "wc-1"),
            id="reached-external",
        ),
        pytest.param(
            conversation(
                QUEUE,
                party(
                    "agent",
                    session("callback", seg("alert"), seg("wrapup", wrapUpCode="wc-9")),
                    session("voice", seg("dialing"), seg("interact")),
                ),
                customer(ANSWERED),
            ),
            Evidence(REACHED, "", "wc-9"),
            id="agent-interact-on-voice-session",
        ),
        # Voicemail from call analysis.
        pytest.param(
            conversation(
                QUEUE,
                agent(),
                customer(ANSWERED, dispositionName="disposition.classification.callable.machine"),
            ),
            Evidence(NR, R.VOICEMAIL, "wc-1"),
            id="machine-answered",
        ),
        pytest.param(
            conversation(QUEUE, agent(), customer(ANSWERED, dispositionName="MACHINE")),
            Evidence(NR, R.VOICEMAIL, "wc-1"),
            id="machine-any-case",
        ),
        pytest.param(
            conversation(
                QUEUE,
                agent(),
                customer(ANSWERED, dispositionName="disposition.classification.callable.live"),
            ),
            Evidence(REACHED, "", "wc-1"),
            id="live-disposition-is-reached",
        ),
        # Agent connected, customer's leg never interacted: its codes.
        pytest.param(
            conversation(QUEUE, agent(), customer(failed_dial(q850ResponseCodes=[17]))),
            Evidence(NR, R.BUSY, "wc-1"),
            id="q850-17-busy",
        ),
        pytest.param(
            conversation(QUEUE, agent(), customer(failed_dial(q850ResponseCodes=[18]))),
            Evidence(NR, R.NO_ANSWER, "wc-1"),
            id="q850-18-no-answer",
        ),
        pytest.param(
            conversation(QUEUE, agent(), customer(failed_dial(q850ResponseCodes=[16, 19]))),
            Evidence(NR, R.NO_ANSWER, "wc-1"),
            id="q850-19-no-answer",
        ),
        pytest.param(
            conversation(QUEUE, agent(), customer(failed_dial(sipResponseCodes=[486]))),
            Evidence(NR, R.BUSY, "wc-1"),
            id="sip-486-busy",
        ),
        pytest.param(
            conversation(QUEUE, agent(), customer(failed_dial(sipResponseCodes=[408]))),
            Evidence(NR, R.NO_ANSWER, "wc-1"),
            id="sip-408-no-answer",
        ),
        pytest.param(
            conversation(QUEUE, agent(), customer(failed_dial(sipResponseCodes=[480]))),
            Evidence(NR, R.NO_ANSWER, "wc-1"),
            id="sip-480-no-answer",
        ),
        pytest.param(
            conversation(
                QUEUE,
                agent(),
                customer(failed_dial(q850ResponseCodes=[19], sipResponseCodes=[486])),
            ),
            Evidence(NR, R.NO_ANSWER, "wc-1"),
            id="q850-before-sip",
        ),
        pytest.param(
            conversation(QUEUE, agent(), customer(failed_dial(q850ResponseCodes=["17"]))),
            Evidence(NR, R.BUSY, "wc-1"),
            id="q850-as-string",
        ),
        *(
            pytest.param(
                conversation(QUEUE, agent(), customer(failed_dial(disconnectType=kind))),
                Evidence(NR, R.FAILED, "wc-1"),
                id=f"disconnect-{kind}",
            )
            for kind in ("error", "system", "uncallable", "transportFailure")
        ),
        pytest.param(
            conversation(QUEUE, agent(), customer(failed_dial(errorCode="error.ininedgecontrol"))),
            Evidence(NR, R.FAILED, "wc-1"),
            id="error-code",
        ),
        pytest.param(
            conversation(
                QUEUE,
                agent(),
                customer(failed_dial(disconnectType="error", q850ResponseCodes=[17])),
            ),
            Evidence(NR, R.BUSY, "wc-1"),
            id="codes-before-disconnect",
        ),
        pytest.param(
            conversation(QUEUE, agent(), customer(failed_dial(disconnectType="endpoint"))),
            Evidence(NR, R.NO_ANSWER, "wc-1"),
            id="endpoint-is-no-answer",
        ),
        pytest.param(
            conversation(QUEUE, agent()),
            Evidence(NR, R.NO_ANSWER, "wc-1"),
            id="agent-never-dialed",
        ),
        # No agent took it.
        pytest.param(conversation(QUEUE), Evidence(NR, R.ABANDONED), id="no-agent-participant"),
        pytest.param(
            conversation(QUEUE, agent(wrapup=None, interacted=False)),
            Evidence(NR, R.ABANDONED),
            id="agent-alerted-never-answered",
        ),
        pytest.param(
            conversation(QUEUE, customer(ANSWERED)),
            Evidence(NR, R.ABANDONED),
            id="customer-answered-no-agent",
        ),
        pytest.param(conversation(), Evidence(NR, R.ABANDONED), id="no-participants"),
        pytest.param(
            conversation(QUEUE, customer(failed_dial(q850ResponseCodes=[17]))),
            Evidence(NR, R.BUSY),
            id="customer-first-dial-busy-no-agent",
        ),
        pytest.param(
            conversation(QUEUE, customer(failed_dial())),
            Evidence(NR, R.NO_ANSWER),
            id="customer-first-dial-unanswered-no-agent",
        ),
        # Known dialer codes win over the legs; unknown ones are carried and the legs decide.
        pytest.param(
            conversation(QUEUE, agent(wrapup="ININ-OUTBOUND-BUSY"), customer(ANSWERED)),
            Evidence(NR, R.BUSY, "ININ-OUTBOUND-BUSY"),
            id="dialer-code-on-agent",
        ),
        pytest.param(
            conversation(
                party(
                    "customer",
                    session(
                        "voice", seg("dialing"), seg("contacting", wrapUpCode="ININ-OUTBOUND-FAX")
                    ),
                )
            ),
            Evidence(NR, R.WRONG_NUMBER, "ININ-OUTBOUND-FAX"),
            id="dialer-code-on-customer",
        ),
        pytest.param(
            conversation(
                party(
                    "outbound",
                    session("voice", seg("system", wrapUpCode="ININ-OUTBOUND-ON-DO-NOT-CALL-LIST")),
                )
            ),
            Evidence(NR, R.DO_NOT_CALL, "ININ-OUTBOUND-ON-DO-NOT-CALL-LIST", do_not_call=True),
            id="dialer-dnc-on-any-participant",
        ),
        pytest.param(
            conversation(
                QUEUE,
                agent(wrapup="wc-1"),
                party(
                    "customer", session("voice", seg("interact", wrapUpCode="ININ-OUTBOUND-BUSY"))
                ),
            ),
            Evidence(REACHED, "", "wc-1"),
            id="agent-wrapup-wins-over-a-dialer-code",
        ),
        pytest.param(
            conversation(QUEUE, agent(wrapup="ININ-OUTBOUND-DISCONNECT"), customer(ANSWERED)),
            Evidence(REACHED, "", "ININ-OUTBOUND-DISCONNECT"),
            id="unknown-dialer-code-legs-decide",
        ),
    ],
)
def test_genesys_conversation(conv: dict[str, Any], evidence: Evidence | None) -> None:
    assert genesys_conversation(conv) == evidence


_DIALER_TABLE = [
    ("ININ-OUTBOUND-NO-ANSWER", Evidence(NR, R.NO_ANSWER, "ININ-OUTBOUND-NO-ANSWER")),
    ("ININ-OUTBOUND-BUSY", Evidence(NR, R.BUSY, "ININ-OUTBOUND-BUSY")),
    ("ININ-OUTBOUND-MACHINE", Evidence(NR, R.VOICEMAIL, "ININ-OUTBOUND-MACHINE")),
    ("ININ-OUTBOUND-FAX", Evidence(NR, R.WRONG_NUMBER, "ININ-OUTBOUND-FAX")),
    ("ININ-OUTBOUND-SIT-UNCALLABLE", Evidence(NR, R.WRONG_NUMBER, "ININ-OUTBOUND-SIT-UNCALLABLE")),
    (
        "ININ-OUTBOUND-INVALID-PHONE-NUMBER",
        Evidence(NR, R.WRONG_NUMBER, "ININ-OUTBOUND-INVALID-PHONE-NUMBER"),
    ),
    (
        "ININ-OUTBOUND-NUMBER_COULD_NOT_BE_DIALED",
        Evidence(NR, R.WRONG_NUMBER, "ININ-OUTBOUND-NUMBER_COULD_NOT_BE_DIALED"),
    ),
    (
        "ININ-OUTBOUND-ON-DO-NOT-CALL-LIST",
        Evidence(NR, R.DO_NOT_CALL, "ININ-OUTBOUND-ON-DO-NOT-CALL-LIST", do_not_call=True),
    ),
    ("ININ-OUTBOUND-SIT-CALLABLE", Evidence(NR, R.FAILED, "ININ-OUTBOUND-SIT-CALLABLE")),
    (
        "ININ-OUTBOUND-FAILED-TO-REACH-AGENT",
        Evidence(NR, R.ABANDONED, "ININ-OUTBOUND-FAILED-TO-REACH-AGENT"),
    ),
    ("ININ-OUTBOUND-LIVE-VOICE", Evidence(REACHED, "", "ININ-OUTBOUND-LIVE-VOICE")),
    ("ININ-OUTBOUND-LINE-CONNECTED", Evidence(REACHED, "", "ININ-OUTBOUND-LINE-CONNECTED")),
]


def test_the_dialer_table_is_the_tested_one() -> None:
    assert set(DIALER_CODES) == {code for code, _ in _DIALER_TABLE}


@pytest.mark.parametrize(("code", "evidence"), _DIALER_TABLE)
def test_dialer_codes_in_a_conversation(code: str, evidence: Evidence) -> None:
    assert genesys_conversation(conversation(QUEUE, agent(wrapup=code), customer(ANSWERED))) == (
        evidence
    )


def contact(column: str = "phone", **record: Any) -> dict[str, Any]:
    return {
        "id": "k-1",
        "contactListId": "l-1",
        "data": {"phone": "+14155550100"},
        "callable": True,
        "callRecords": {column: {"lastAttempt": "2026-12-01T10:00:00.000Z", **record}},
        "phoneNumberStatus": {column: {"callable": True}},
    }


@pytest.mark.parametrize(("code", "evidence"), _DIALER_TABLE)
def test_dialer_codes_on_a_contact(code: str, evidence: Evidence) -> None:
    assert genesys_contact(contact(lastResult=code), "phone") == evidence


@pytest.mark.parametrize(
    ("doc", "column", "evidence"),
    [
        pytest.param(
            contact(lastResult="wc-7"), "phone", Evidence(REACHED, "", "wc-7"), id="agent"
        ),
        pytest.param(
            contact(lastResult=" ininoutbound-busy"),
            "phone",
            Evidence(REACHED, "", "ininoutbound-busy"),
            id="not-quite-a-dialer-code",
        ),
        pytest.param(
            contact(lastResult="inin-outbound-busy"),
            "phone",
            Evidence(NR, R.BUSY, "inin-outbound-busy"),
            id="dialer-code-any-case",
        ),
        pytest.param(
            contact(lastResult="ININ-OUTBOUND-PREVIEW-SKIPPED"),
            "phone",
            Evidence(NR, "ININ-OUTBOUND-PREVIEW-SKIPPED", "ININ-OUTBOUND-PREVIEW-SKIPPED"),
            id="unknown-dialer-code-not-reached",
        ),
        pytest.param(contact(), "phone", None, id="no-result-yet"),
        pytest.param(contact(lastResult=""), "phone", None, id="empty-result"),
        pytest.param(contact(lastResult=None), "phone", None, id="null-result"),
        pytest.param(contact(lastResult=17), "phone", None, id="number-result"),
        pytest.param(contact(lastResult="wc-7"), "mobile", None, id="other-column"),
        pytest.param(
            contact("mobile", lastResult="ININ-OUTBOUND-FAX"),
            "mobile",
            Evidence(NR, R.WRONG_NUMBER, "ININ-OUTBOUND-FAX"),
            id="named-column",
        ),
        pytest.param({"callRecords": []}, "phone", None, id="records-not-an-object"),
        pytest.param({"callRecords": {"phone": "x"}}, "phone", None, id="record-not-an-object"),
        pytest.param({}, "phone", None, id="no-records"),
        pytest.param([], "phone", None, id="not-an-object"),
    ],
)
def test_genesys_contact(doc: Any, column: str, evidence: Evidence | None) -> None:
    assert genesys_contact(doc, column) == evidence


# --- Genesys details query body -----------------------------------------------------------


def test_query_body_as_the_reference_shows_it() -> None:
    start = 1_796_083_200.0  # 2026-12-01T00:00:00Z
    assert genesys_query_body(["id-1", "id-2"], start, start + 3600.5) == {
        "interval": "2026-11-30T23:59:00.000Z/2026-12-02T01:00:00.500Z",
        "order": "asc",
        "orderBy": "conversationStart",
        "paging": {"pageSize": 2, "pageNumber": 1},
        "conversationFilters": [
            {
                "type": "or",
                "predicates": [
                    {
                        "type": "dimension",
                        "dimension": "conversationId",
                        "operator": "matches",
                        "value": "id-1",
                    },
                    {
                        "type": "dimension",
                        "dimension": "conversationId",
                        "operator": "matches",
                        "value": "id-2",
                    },
                ],
            }
        ],
    }


@given(st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=100))
def test_query_body_holds_every_id_on_one_page(ids: list[str]) -> None:
    body = genesys_query_body(ids, 1_795_996_800.0, 1_796_000_000.0)
    assert body["paging"] == {"pageSize": len(ids), "pageNumber": 1}
    (only,) = body["conversationFilters"]
    assert only["type"] == "or"
    assert [p["value"] for p in only["predicates"]] == ids


@pytest.mark.parametrize(
    ("count", "start", "end", "problem"),
    [
        pytest.param(101, 0.0, 1.0, "at most 100", id="101-ids"),
        pytest.param(0, 0.0, 1.0, "at least one", id="no-ids"),
        pytest.param(1, 10.0, 9.0, "forward", id="backwards"),
        pytest.param(1, float("nan"), 9.0, "forward", id="nan"),
        pytest.param(1, 0.0, float("inf"), "forward", id="inf"),
        pytest.param(1, 0.0, 30 * 86_400.0 - 59, "31 days", id="over-31-days"),
    ],
)
def test_query_body_refuses(count: int, start: float, end: float, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        genesys_query_body([f"id-{i}" for i in range(count)], start, end)


def test_query_body_at_the_limits() -> None:
    body = genesys_query_body([f"id-{i}" for i in range(100)], 60.0, 60.0 + 30 * 86_400.0 - 60)
    assert body["paging"]["pageSize"] == 100
    assert body["interval"] == "1970-01-01T00:00:00.000Z/1970-02-01T00:00:00.000Z"


# --- Twilio -------------------------------------------------------------------------------

_TWILIO = [
    ("completed", None, Evidence(REACHED)),
    ("completed", "human", Evidence(REACHED)),
    ("completed", "unknown", Evidence(REACHED)),
    ("completed", "machine_start", Evidence(NR, R.VOICEMAIL)),
    ("completed", "machine_end_beep", Evidence(NR, R.VOICEMAIL)),
    ("completed", "machine_end_silence", Evidence(NR, R.VOICEMAIL)),
    ("completed", "machine_end_other", Evidence(NR, R.VOICEMAIL)),
    ("completed", "fax", Evidence(NR, R.WRONG_NUMBER)),
    ("busy", None, Evidence(NR, R.BUSY)),
    ("no-answer", None, Evidence(NR, R.NO_ANSWER)),
    ("failed", None, Evidence(NR, R.FAILED)),
    ("canceled", None, Evidence(NR, R.CANCELED)),
    ("queued", None, None),
    ("initiated", None, None),
    ("ringing", None, None),
    ("in-progress", None, None),
    ("in-progress", "machine_start", None),  # async AMD before the end: not yet terminal
    ("answered", None, None),  # an event name, not a status
    ("", None, None),
]


@pytest.mark.parametrize(("status", "answered_by", "evidence"), _TWILIO)
def test_twilio_status_callback(
    status: str, answered_by: str | None, evidence: Evidence | None
) -> None:
    form = {"CallSid": "CA1", "CallStatus": status, "SequenceNumber": "3"}
    if answered_by is not None:
        form["AnsweredBy"] = answered_by
    assert twilio_status(form) == evidence


@pytest.mark.parametrize(("status", "answered_by", "evidence"), _TWILIO)
def test_twilio_call_resource(
    status: str, answered_by: str | None, evidence: Evidence | None
) -> None:
    resource = {"sid": "CA1", "status": status, "answered_by": answered_by}
    assert twilio_status(resource, snake_case=True) == evidence  # type: ignore[arg-type]
    # Each form reads only its own names.
    assert twilio_status(resource) is None  # type: ignore[arg-type]


def test_twilio_status_reads_case_and_space_leniently() -> None:
    assert twilio_status({"CallStatus": " Completed ", "AnsweredBy": "Machine_Start"}) == Evidence(
        NR, R.VOICEMAIL
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0", 0), ("17", 17), (" 4 ", 4), ("", -1), ("-1", -1), ("1.5", -1), ("x", -1), ("٣", -1)],
)
def test_twilio_sequence(value: str, expected: int) -> None:
    assert twilio_sequence({"SequenceNumber": value}) == expected


def test_twilio_sequence_absent() -> None:
    assert twilio_sequence({"CallStatus": "ringing"}) == -1


# --- CXone --------------------------------------------------------------------------------

DISPOSITIONS = {7: "Spoke with customer", 8: "Wrong person"}


def completed(**fields: Any) -> dict[str, Any]:
    return {
        "contactId": 1001,
        "masterContactId": 1001,
        "isOutbound": True,
        "abandoned": False,
        "agentSeconds": 0,
        "endReason": "",
        **fields,
    }


@pytest.mark.parametrize(
    ("item", "evidence"),
    [
        pytest.param(completed(abandoned=True), Evidence(NR, R.ABANDONED), id="abandoned"),
        pytest.param(
            completed(abandoned=True, agentSeconds=30),
            Evidence(NR, R.ABANDONED),
            id="abandoned-first",
        ),
        pytest.param(completed(abandoned="true"), Evidence(NR, R.ABANDONED), id="abandoned-string"),
        pytest.param(completed(endReason="NoAnswer"), Evidence(NR, R.NO_ANSWER), id="no-answer"),
        pytest.param(completed(endReason="Busy"), Evidence(NR, R.BUSY), id="busy"),
        pytest.param(completed(endReason="Machine"), Evidence(NR, R.VOICEMAIL), id="machine"),
        pytest.param(completed(endReason="NoVoice"), Evidence(NR, R.VOICEMAIL), id="no-voice"),
        pytest.param(
            completed(endReason="MachineTimeout"), Evidence(NR, R.VOICEMAIL), id="machine-timeout"
        ),
        pytest.param(
            completed(endReason="InvalidNumber"), Evidence(NR, R.WRONG_NUMBER), id="invalid-number"
        ),
        pytest.param(completed(endReason="Error"), Evidence(NR, R.FAILED), id="error"),
        pytest.param(completed(endReason="noanswer"), Evidence(NR, R.NO_ANSWER), id="any-case"),
        pytest.param(completed(agentSeconds=42), Evidence(REACHED), id="agent-talked"),
        pytest.param(completed(agentSeconds=0.5), Evidence(REACHED), id="agent-half-second"),
        pytest.param(completed(agentSeconds="12"), Evidence(REACHED), id="agent-seconds-string"),
        pytest.param(
            completed(agentSeconds=42, primaryDispositionId=7),
            Evidence(REACHED, "", "Spoke with customer"),
            id="disposition-resolved",
        ),
        pytest.param(
            completed(endReason="Busy", primaryDispositionId="8"),
            Evidence(NR, R.BUSY, "Wrong person"),
            id="disposition-id-string",
        ),
        pytest.param(
            completed(agentSeconds=42, primaryDispositionId=99),
            Evidence(REACHED),
            id="disposition-unknown",
        ),
        pytest.param(
            completed(agentSeconds=42, primaryDispositionId=True),
            Evidence(REACHED),
            id="disposition-bool-is-no-id",
        ),
        pytest.param(completed(), None, id="nothing-says-terminal"),
        pytest.param(completed(agentSeconds=True), None, id="agent-seconds-bool"),
        pytest.param(completed(agentSeconds=-3), None, id="agent-seconds-negative"),
        pytest.param(completed(endReason="ContactHungUp"), None, id="unknown-end-reason"),
        pytest.param(completed(abandoned="yes"), None, id="abandoned-unreadable"),
        pytest.param("1001", None, id="not-an-object"),
    ],
)
def test_cxone_completed(item: Any, evidence: Evidence | None) -> None:
    assert cxone_completed(item, DISPOSITIONS) == evidence


# --- the wrap-up codes' meaning over the legs ---------------------------------------------

CODES = WrapupCodes(
    reached=frozenset({"ININ-OUTBOUND-TRANSFERRED-TO-QUEUE"}),
    not_reached=frozenset({"wc-left-message"}),
    wrong_number=frozenset({"Wrong person"}),
    do_not_call=frozenset({"wc-dnc"}),
)


@pytest.mark.parametrize(
    ("evidence", "applied"),
    [
        pytest.param(
            genesys_conversation(
                conversation(QUEUE, agent(wrapup="wc-left-message"), customer(ANSWERED))
            ),
            Evidence(NR, "wc-left-message", "wc-left-message"),
            id="genesys-talked-but-code-says-not-reached",
        ),
        pytest.param(
            genesys_conversation(conversation(QUEUE, agent(wrapup="wc-dnc"), customer(ANSWERED))),
            Evidence(NR, R.DO_NOT_CALL, "wc-dnc", do_not_call=True),
            id="genesys-dnc-code",
        ),
        pytest.param(
            genesys_conversation(conversation(QUEUE, agent(wrapup="wc-other"), customer(ANSWERED))),
            Evidence(REACHED, "", "wc-other"),
            id="genesys-unmapped-code-keeps-the-legs",
        ),
        pytest.param(
            genesys_conversation(
                conversation(
                    QUEUE, agent(wrapup="wc-dnc"), customer(failed_dial(q850ResponseCodes=[17]))
                )
            ),
            Evidence(NR, R.DO_NOT_CALL, "wc-dnc", do_not_call=True),
            id="genesys-code-wins-over-busy",
        ),
        pytest.param(
            genesys_contact(contact(lastResult="ININ-OUTBOUND-TRANSFERRED-TO-QUEUE"), "phone"),
            Evidence(REACHED, "", "ININ-OUTBOUND-TRANSFERRED-TO-QUEUE"),
            id="contact-unknown-dialer-code-configured-reached",
        ),
        pytest.param(
            genesys_contact(contact(lastResult="wc-left-message"), "phone"),
            Evidence(NR, "wc-left-message", "wc-left-message"),
            id="contact-agent-code-configured-not-reached",
        ),
        pytest.param(
            cxone_completed(completed(agentSeconds=40, primaryDispositionId=8), DISPOSITIONS),
            Evidence(NR, R.WRONG_NUMBER, "Wrong person"),
            id="cxone-disposition-name-configured",
        ),
        pytest.param(
            twilio_status({"CallStatus": "busy"}),
            Evidence(NR, R.BUSY),
            id="twilio-has-no-code",
        ),
    ],
)
def test_wrapup_codes_apply_over_the_parsed_evidence(
    evidence: Evidence | None, applied: Evidence
) -> None:
    assert evidence is not None
    assert CODES.apply(evidence) == applied


# --- junk never raises ----------------------------------------------------------------------

_SCALAR = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
_JSON = st.recursive(
    _SCALAR,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


def _shaped(keys: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with the vendor's keys (each present or not), values right or junk."""
    return st.fixed_dictionaries({}, optional={k: v | _JSON for k, v in keys.items()})


_CODES = st.sampled_from([*DIALER_CODES, "wc-1", "ININ-OUTBOUND-X", ""])
_SEGMENT = _shaped(
    {
        "segmentType": st.sampled_from(["interact", "wrapup", "dialing", "contacting", "alert"]),
        "wrapUpCode": _CODES,
        "disconnectType": st.sampled_from(["error", "endpoint", "system", "transportFailure"]),
        "q850ResponseCodes": st.lists(st.integers(0, 130) | _JSON, max_size=3),
        "sipResponseCodes": st.lists(st.integers(100, 700) | _JSON, max_size=3),
        "errorCode": st.text(max_size=5),
    }
)
_SESSION = _shaped(
    {
        "mediaType": st.sampled_from(["voice", "callback"]),
        "dispositionName": st.sampled_from(["disposition.classification.callable.machine", "live"]),
        "segments": st.lists(_SEGMENT | _JSON, max_size=4),
    }
)
_PARTICIPANT = _shaped(
    {
        "purpose": st.sampled_from(["agent", "customer", "external", "acd", "outbound"]),
        "sessions": st.lists(_SESSION | _JSON, max_size=3),
    }
)
_CONVERSATION = _shaped(
    {
        "conversationEnd": st.just("2026-12-01T10:05:00.000Z"),
        "participants": st.lists(_PARTICIPANT | _JSON, max_size=4),
    }
)
_RESULT = st.sampled_from(list(CallResult))


def _sane(evidence: Evidence | None) -> None:
    if evidence is None:
        return
    assert evidence.result in (REACHED, NR)
    assert isinstance(evidence.reason, str)
    assert isinstance(evidence.wrapup_code, str)
    assert evidence.do_not_call == (evidence.reason == R.DO_NOT_CALL)


@given(_CONVERSATION | _JSON)
def test_any_conversation_reads_without_raising(conv: Any) -> None:
    _sane(genesys_conversation(conv))


@given(_CONVERSATION)
def test_no_end_no_result(conv: dict[str, Any]) -> None:
    conv.pop("conversationEnd", None)
    assert genesys_conversation(conv) is None


@given(_JSON, st.text(max_size=8))
def test_any_contact_reads_without_raising(doc: Any, column: str) -> None:
    _sane(genesys_contact(doc, column))
    _sane(genesys_contact({"callRecords": {column: {"lastResult": doc}}}, column))


@given(
    _shaped(
        {
            "abandoned": st.booleans(),
            "endReason": st.sampled_from(["NoAnswer", "Busy", "Machine", "Error", "Other"]),
            "agentSeconds": st.integers() | st.floats(),
            "primaryDispositionId": st.integers() | st.floats(),
        }
    )
    | _JSON
)
def test_any_completed_contact_reads_without_raising(item: Any) -> None:
    _sane(cxone_completed(item, DISPOSITIONS))


@given(
    st.dictionaries(
        st.sampled_from(["CallStatus", "AnsweredBy", "SequenceNumber", "status"]), _JSON
    )
)
def test_any_twilio_form_reads_without_raising(form: dict[str, Any]) -> None:
    _sane(twilio_status(form))
    _sane(twilio_status(form, snake_case=True))
    assert twilio_sequence(form) >= -1
