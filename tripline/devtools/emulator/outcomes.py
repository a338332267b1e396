"""Call outcomes the emulator plays: each placed call's result, fixed when it is placed."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

RESULTS = ("answered", "no_answer", "busy", "voicemail", "failed")
"""What `call_results` items may name; an empty list plays `answered`."""

KINDS = ("callback", "contact", "cxone", "twilio")
"""Where a call was placed: a Genesys callback, a Genesys campaign contact, a CXone script
start, a Twilio call."""

CALLBACK_CODES = {
    "no_answer": "ININ-OUTBOUND-NO-ANSWER",
    "busy": "ININ-OUTBOUND-BUSY",
    "voicemail": "ININ-OUTBOUND-MACHINE",
    "failed": "ININ-OUTBOUND-DISCONNECT",
}
"""The wrap-up a Genesys callback's agent gets when the customer was not reached."""

CAMPAIGN_CODES = {**CALLBACK_CODES, "failed": "ININ-OUTBOUND-SIT-UNCALLABLE"}
"""The dialer's `lastResult` for a campaign contact not reached (SIT-UNCALLABLE is the one
that marks the number uncallable)."""

WRAPUP_MAX = 255


@dataclass(slots=True, kw_only=True)
class PlacedCall:
    """One call the emulator placed, and what it will turn out to be."""

    id: str
    """The vendor's id: conversationId, contact id, CXone contactId, CallSid."""
    kind: str
    """One of KINDS."""
    created: float
    """When it was placed (epoch seconds, the emulator's clock)."""
    starts: float
    """When it is worked: `created`, or a later callbackScheduledTime."""
    visible_at: float
    """`starts` + call_result_delay_seconds: from then on its result shows."""
    result: str
    """One of RESULTS, fixed at placement."""
    wrapup_code: str
    """The agent's (or dialer's) wrap-up code; empty when the vendor has none to report."""
    phone: str
    """The number dialled."""
    canceled_at: float | None = None
    """When we cancelled it (only before its result showed)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Vendor details: queueId, the contact's data, Twilio's StatusCallback and so on."""

    @property
    def canceled(self) -> bool:
        """Whether it was cancelled before its result showed."""
        return self.canceled_at is not None

    def finished(self, now: float) -> bool:
        """Whether its result (or its cancellation) shows at `now`."""
        return self.canceled_at is not None or now >= self.visible_at

    def ended(self) -> float:
        """When it ended: cancelled, or the result time."""
        return self.canceled_at if self.canceled_at is not None else self.visible_at

    def at(self, fraction: float) -> float:
        """A moment between `starts` (0) and `visible_at` (1): where segments are laid out."""
        return self.starts + fraction * (self.visible_at - self.starts)

    def to_json(self, now: float) -> dict[str, Any]:
        """What GET /_emulator/calls shows of it."""
        return {
            "id": self.id,
            "kind": self.kind,
            "createdAt": iso(self.created),
            "startsAt": iso(self.starts),
            "visibleAt": iso(self.visible_at),
            "result": self.result,
            "wrapupCode": self.wrapup_code,
            "phone": self.phone,
            "canceled": self.canceled,
            "finished": self.finished(now),
        }


def check_call_results(items: list[Any]) -> str:
    """The problem with a `call_results` setting, or "" when every item is playable."""
    for n, item in enumerate(items):
        if isinstance(item, str):
            if item not in RESULTS:
                return f"call_results[{n}]: {item!r} is not one of {', '.join(RESULTS)}"
            continue
        if not isinstance(item, dict):
            return f"call_results[{n}] must be a string or an object"
        unknown = set(item) - {"result", "wrapupCode"}
        if unknown:
            return f"call_results[{n}]: unknown keys {', '.join(sorted(unknown))}"
        if item.get("result") not in RESULTS:
            return f"call_results[{n}].result must be one of {', '.join(RESULTS)}"
        code = item.get("wrapupCode", "x")
        if not isinstance(code, str) or not 0 < len(code) <= WRAPUP_MAX:
            return f"call_results[{n}].wrapupCode must be a string of 1 to {WRAPUP_MAX} characters"
    return ""


def check_delay(value: float) -> str:
    """The problem with a `call_result_delay_seconds` setting, or ""."""
    if not math.isfinite(value) or value < 0:
        return "call_result_delay_seconds must be a finite number >= 0"
    return ""


def planned(item: str | dict[str, Any]) -> tuple[str, str]:
    """An item of `call_results` as (result, its own wrap-up code or "")."""
    if isinstance(item, str):
        return item, ""
    return str(item["result"]), str(item.get("wrapupCode", ""))


def default_code(kind: str, result: str, wrapup: str) -> str:
    """The wrap-up code a call of `kind` reports for `result` when its item named none."""
    if result == "answered":
        return wrapup
    if kind == "callback":
        return CALLBACK_CODES[result]
    if kind == "contact":
        return CAMPAIGN_CODES[result]
    return ""


def iso(at: float) -> str:
    """Epoch seconds as the vendors write them: 2026-12-02T05:00:00.000Z."""
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(text: Any) -> float | None:  # noqa: ANN401 - whatever the body held
    """An ISO-8601 instant as epoch seconds (no zone: UTC), or None when malformed."""
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
