"""What the vendors say became of a placed call, as Evidence (None: no terminal result yet).

Pure parsers of the payloads the backends poll or are pushed (shapes in the call-outcomes
reference): a Genesys analytics conversation or campaign contact, a Twilio status callback or
Call resource, a CXone completed contact. They read what they can and never raise: a payload is
vendor data that may be partial (analytics fill in over minutes), of a newer shape, or junk, and
one unreadable call must not stop the poll that reads a hundred. An unreadable part counts as
absent; a payload that says nothing terminal answers None, and the result timeout turns a call
that never gets an answer into `unknown`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

from tripline.adapters.store import iso
from tripline.pipeline.reach import CallResult, Evidence, ResultReason

_NR = CallResult.NOT_REACHED

# --- Genesys Cloud -------------------------------------------------------------------------

_DIALER_PREFIX = "ININ-OUTBOUND-"

DIALER_CODES: Mapping[str, Evidence] = {
    # Codes the dialer (not a person) puts on a call: documented ones and those seen in public
    # clients (reference §1d). The code is carried in wrapup_code too, so [outcomes] may
    # re-map it through WrapupCodes.apply.
    "ININ-OUTBOUND-NO-ANSWER": Evidence(_NR, ResultReason.NO_ANSWER),
    "ININ-OUTBOUND-BUSY": Evidence(_NR, ResultReason.BUSY),
    "ININ-OUTBOUND-MACHINE": Evidence(_NR, ResultReason.VOICEMAIL),
    "ININ-OUTBOUND-FAX": Evidence(_NR, ResultReason.WRONG_NUMBER),
    "ININ-OUTBOUND-SIT-UNCALLABLE": Evidence(_NR, ResultReason.WRONG_NUMBER),
    "ININ-OUTBOUND-INVALID-PHONE-NUMBER": Evidence(_NR, ResultReason.WRONG_NUMBER),
    "ININ-OUTBOUND-NUMBER_COULD_NOT_BE_DIALED": Evidence(_NR, ResultReason.WRONG_NUMBER),
    "ININ-OUTBOUND-ON-DO-NOT-CALL-LIST": Evidence(_NR, ResultReason.DO_NOT_CALL, do_not_call=True),
    "ININ-OUTBOUND-SIT-CALLABLE": Evidence(_NR, ResultReason.FAILED),
    "ININ-OUTBOUND-FAILED-TO-REACH-AGENT": Evidence(_NR, ResultReason.ABANDONED),
    # The dialer connected a live voice (to an agent): a person answered.
    "ININ-OUTBOUND-LIVE-VOICE": Evidence(CallResult.REACHED),
    "ININ-OUTBOUND-LINE-CONNECTED": Evidence(CallResult.REACHED),
}

_Q850 = {17: ResultReason.BUSY, 18: ResultReason.NO_ANSWER, 19: ResultReason.NO_ANSWER}
_SIP = {486: ResultReason.BUSY, 408: ResultReason.NO_ANSWER, 480: ResultReason.NO_ANSWER}
_FAILED_DISCONNECTS = frozenset({"error", "system", "uncallable", "transportfailure"})
_CUSTOMER = frozenset({"customer", "external"})
_MAX_IDS = 100
_DAY = 86_400.0
_MAX_SPAN = 31 * _DAY  # Genesys refuses a filtered details query over a longer interval


def genesys_conversation(conv: Any) -> Evidence | None:  # noqa: ANN401
    """One conversation of the analytics details query (or by-id read), as Evidence.

    Ongoing (no conversationEnd) is None; so is an agent who talked but has not wrapped up yet
    (the wrap-up code may still change the meaning). A dialer code the table knows wins over
    the legs; otherwise the legs decide: a machine answered (call analysis) is a voicemail; the
    customer and an agent both interacting is reached; a dialed customer leg that never
    interacted says busy/no answer/failed from its Q.850 and SIP codes and disconnect type; no
    agent ever taking the call (a callback still queued when it ended, or a customer who answered
    with no agent to talk to) is abandoned. The agent's wrap-up code is always carried.
    """
    if not isinstance(conv, dict):
        return None
    end = conv.get("conversationEnd")
    if not isinstance(end, str) or not end:
        return None
    legs = _Legs.read(conv.get("participants"))
    if legs.agent_connected and not legs.agent_wrapup:
        return None
    return legs.verdict(legs.agent_wrapup or legs.dialer_code)


def genesys_contact(contact: Any, phone_column: str) -> Evidence | None:  # noqa: ANN401
    """A campaign DialerContact's last result on one phone column, as Evidence.

    `callRecords[phone_column].lastResult` is a dialer code (ININ-OUTBOUND-*) or, once an
    agent wrapped the call up, that agent's code: a person wrapped up a call they talked on, so
    it reads as reached until WrapupCodes.apply says otherwise. A dialer code the table does not
    know is not reached with the code as the reason (the dialer, not a person, ended it).
    The record is the column's last attempt: the caller must know it is the attempt it placed.
    """
    if not isinstance(contact, dict):
        return None
    records = contact.get("callRecords")
    record = records.get(phone_column) if isinstance(records, dict) else None
    last = record.get("lastResult") if isinstance(record, dict) else None
    if not isinstance(last, str) or not last.strip():
        return None
    code = last.strip()
    known = DIALER_CODES.get(_norm_code(code))
    if known is not None:
        return Evidence(known.result, known.reason, code, known.do_not_call)
    if _norm_code(code).startswith(_DIALER_PREFIX):
        return Evidence(_NR, code, code)
    return Evidence(CallResult.REACHED, "", code)


def genesys_query_body(ids: list[str], start: float, end: float) -> dict[str, Any]:
    """The POST /api/v2/analytics/conversations/details/query body for these conversations.

    The interval matches on a conversation's start day, so it runs from a minute before the
    earliest creation time (clock skew) to a day past `end` (never "now": the query would miss
    conversations it has not indexed yet). One `or` of conversationId predicates, one page
    holding them all. At most 100 ids (no documented maximum; public clients use 100), none
    zero (an unfiltered query would read the whole org), and the 31 days Genesys allows.
    """
    if not ids:
        raise ValueError("a details query needs at least one conversation id")
    if len(ids) > _MAX_IDS:
        raise ValueError(f"at most {_MAX_IDS} conversation ids per details query, not {len(ids)}")
    if not (math.isfinite(start) and math.isfinite(end)) or end < start:
        raise ValueError("the interval must run forward between finite times")
    since, until = start - 60.0, end + _DAY
    if until - since > _MAX_SPAN:
        raise ValueError("a filtered details query may span at most 31 days")
    return {
        "interval": f"{iso(since)}/{iso(until)}",
        "order": "asc",
        "orderBy": "conversationStart",
        "paging": {"pageSize": len(ids), "pageNumber": 1},
        "conversationFilters": [
            {
                "type": "or",
                "predicates": [
                    {
                        "type": "dimension",
                        "dimension": "conversationId",
                        "operator": "matches",
                        "value": conversation_id,
                    }
                    for conversation_id in ids
                ],
            }
        ],
    }


class _Legs:
    """What a conversation's participants show, read once (private: genesys_conversation's)."""

    __slots__ = (
        "agent_connected",
        "agent_wrapup",
        "customer_answered",
        "customer_dialed",
        "dialer_code",
        "disconnects",
        "error",
        "machine",
        "q850",
        "sip",
    )

    def __init__(self) -> None:
        self.agent_connected = False
        self.agent_wrapup = ""
        self.customer_answered = False
        self.customer_dialed = False
        self.machine = False
        self.dialer_code = ""
        self.q850: list[int] = []
        self.sip: list[int] = []
        self.disconnects: set[str] = set()
        self.error = False

    @classmethod
    def read(cls, participants: Any) -> _Legs:  # noqa: ANN401
        legs = cls()
        for participant in _dicts(participants):
            purpose = _text(participant.get("purpose")).lower()
            for session in _dicts(participant.get("sessions")):
                legs._session(purpose, session)
        return legs

    def _session(self, purpose: str, session: dict[str, Any]) -> None:
        voice = _text(session.get("mediaType")).lower() == "voice"
        customer = purpose in _CUSTOMER and voice
        if customer:
            self.customer_dialed = True
            self.machine |= "machine" in _text(session.get("dispositionName")).lower()
        for segment in _dicts(session.get("segments")):
            kind = _text(segment.get("segmentType")).lower()
            code = _text(segment.get("wrapUpCode")).strip()
            if purpose == "agent":
                self.agent_connected |= kind == "interact"
                if kind == "wrapup" and code:
                    self.agent_wrapup = code
            if code and not self.dialer_code and _norm_code(code).startswith(_DIALER_PREFIX):
                self.dialer_code = code
            if customer:
                self._customer_segment(kind, segment)

    def _customer_segment(self, kind: str, segment: dict[str, Any]) -> None:
        self.customer_answered |= kind == "interact"
        self.q850.extend(_ints(segment.get("q850ResponseCodes")))
        self.sip.extend(_ints(segment.get("sipResponseCodes")))
        disconnect = _text(segment.get("disconnectType")).lower()
        if disconnect:
            self.disconnects.add(disconnect)
        self.error |= bool(_text(segment.get("errorCode")).strip())

    def verdict(self, code: str) -> Evidence:
        """What an ended conversation says, `code` (a wrap-up or dialer code) carried along."""
        known = DIALER_CODES.get(_norm_code(code))
        if known is not None:
            return Evidence(known.result, known.reason, code, known.do_not_call)
        if self.machine:
            return Evidence(_NR, ResultReason.VOICEMAIL, code)
        if self.customer_answered and self.agent_connected:
            return Evidence(CallResult.REACHED, "", code)
        if self.agent_connected or (self.customer_dialed and not self.customer_answered):
            return Evidence(_NR, self.leg_reason(), code)
        return Evidence(_NR, ResultReason.ABANDONED, code)

    def leg_reason(self) -> ResultReason:
        """Why a dialed customer leg did not answer: its codes, else its disconnect, else none."""
        for code in self.q850:
            if code in _Q850:
                return _Q850[code]
        for code in self.sip:
            if code in _SIP:
                return _SIP[code]
        if self.error or self.disconnects & _FAILED_DISCONNECTS:
            return ResultReason.FAILED
        return ResultReason.NO_ANSWER


# --- Twilio --------------------------------------------------------------------------------

_TWILIO_TERMINAL = {
    "busy": ResultReason.BUSY,
    "no-answer": ResultReason.NO_ANSWER,
    "failed": ResultReason.FAILED,
    "canceled": ResultReason.CANCELED,
}
_TWILIO_LIVE = frozenset({"queued", "initiated", "ringing", "in-progress"})


def twilio_status(params: Mapping[str, str], snake_case: bool = False) -> Evidence | None:
    """A status callback's form (or, snake_case, a Call resource's JSON) as Evidence.

    `completed` means the call was answered: by a person unless answering-machine detection
    said a machine (voicemail) or a fax (the number is not a phone: wrong number). Without
    detection, or when it could not tell (`unknown`), a completed call counts as reached.
    Live statuses (queued, initiated, ringing, in-progress) and anything unknown are None.
    """
    if not isinstance(params, Mapping):
        return None
    status_key, by_key = ("status", "answered_by") if snake_case else ("CallStatus", "AnsweredBy")
    status = _text(params.get(status_key)).strip().lower()
    if status == "completed":
        answered_by = _text(params.get(by_key)).strip().lower()
        if answered_by.startswith("machine"):
            return Evidence(_NR, ResultReason.VOICEMAIL)
        if answered_by == "fax":
            return Evidence(_NR, ResultReason.WRONG_NUMBER)
        return Evidence(CallResult.REACHED)
    reason = _TWILIO_TERMINAL.get(status)
    return Evidence(_NR, reason) if reason is not None else None


def twilio_sequence(params: Mapping[str, str]) -> int:
    """The callback's SequenceNumber (callbacks may arrive out of order), -1 when absent or bad."""
    raw = params.get("SequenceNumber") if isinstance(params, Mapping) else None
    if not isinstance(raw, str):
        return -1
    raw = raw.strip()
    if not raw or len(raw) > 18 or not (raw.isascii() and raw.isdigit()):
        return -1
    return int(raw)


# --- NICE CXone ----------------------------------------------------------------------------

_CXONE_END = {
    "noanswer": ResultReason.NO_ANSWER,
    "busy": ResultReason.BUSY,
    "machine": ResultReason.VOICEMAIL,
    "novoice": ResultReason.VOICEMAIL,
    "machinetimeout": ResultReason.VOICEMAIL,
    "invalidnumber": ResultReason.WRONG_NUMBER,
    "error": ResultReason.FAILED,
}


def cxone_completed(contact: Any, dispositions: Mapping[int, str]) -> Evidence | None:  # noqa: ANN401
    """An item of GET /contacts/completed `completedContacts[]` as Evidence.

    Abandoned (no agent took it) first; then an endReason named after a PLACECALL branch; then
    an agent who spent time on it (reached). The primary disposition's name, looked up in the
    business unit's catalogue (`dispositions`, by id), is the wrap-up code ('' when unknown).
    Anything else is a shape we cannot read: None, and the result timeout decides.
    """
    if not isinstance(contact, dict):
        return None
    code = _disposition(contact.get("primaryDispositionId"), dispositions)
    if _flag(contact.get("abandoned")):
        return Evidence(_NR, ResultReason.ABANDONED, code)
    reason = _CXONE_END.get(_text(contact.get("endReason")).strip().lower())
    if reason is not None:
        return Evidence(_NR, reason, code)
    seconds = _number(contact.get("agentSeconds"))
    if seconds is not None and seconds > 0:
        return Evidence(CallResult.REACHED, "", code)
    return None


def _disposition(raw: Any, dispositions: Mapping[int, str]) -> str:  # noqa: ANN401
    number = _number(raw)
    if number is None or not number.is_integer():
        return ""
    try:
        name = dispositions.get(int(number), "")
    except Exception:
        return ""
    return name if isinstance(name, str) else ""


# --- reading untrusted JSON ----------------------------------------------------------------


def _dicts(value: Any) -> Iterator[dict[str, Any]]:  # noqa: ANN401
    """The objects of a list (anything else in it, or a non-list, is skipped)."""
    if isinstance(value, list):
        for item in value:
            if isinstance(item, dict):
                yield item


def _text(value: Any) -> str:  # noqa: ANN401
    return value if isinstance(value, str) else ""


def _norm_code(code: str) -> str:
    return code.strip().upper()


def _ints(value: Any) -> Iterator[int]:  # noqa: ANN401
    """The whole numbers of a list (numbers or digit strings; bools and junk skipped)."""
    if not isinstance(value, list):
        return
    for item in value:
        number = _number(item)
        if number is not None and number.is_integer():
            yield int(number)


def _number(value: Any) -> float | None:  # noqa: ANN401
    """A finite number from a JSON number or a short numeric string (None otherwise)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return float(value) if abs(value) < 2**53 else None
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str) and 0 < len(value) <= 32:
        try:
            number = float(value)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def _flag(value: Any) -> bool:  # noqa: ANN401
    """True only for JSON true (or the string 'true', as some CXone fields are typed)."""
    if isinstance(value, bool):
        return value
    return isinstance(value, str) and value.strip().lower() == "true"
