"""Reaching the customer: a placed call's result, and the re-attempt ladder across contacts.

Pure decisions, `now` passed in. What a backend reported about one call becomes Evidence (the
backend adapters parse the vendors' payloads); the ladder decides, from the attempts so far,
whether and when the next attempt goes out and to which of the customer's contacts.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from tripline.messages import Priority


class CallResult(StrEnum):
    """What became of a placed call (a `called` record's `result`)."""

    PENDING = "pending"
    REACHED = "reached"
    NOT_REACHED = "not_reached"
    UNKNOWN = "unknown"


class ResultReason(StrEnum):
    """Why a call did not reach the customer (`resultReason`; a wrap-up code may stand instead)."""

    NO_ANSWER = "no_answer"
    BUSY = "busy"
    VOICEMAIL = "voicemail"
    FAILED = "failed"
    WRONG_NUMBER = "wrong_number"
    ABANDONED = "abandoned"
    """The call was set up but no agent took it (a callback that never reached an agent)."""
    CANCELED = "canceled"
    """We cancelled it (a resolve, a maintenance window) before it reached anyone."""
    TIMEOUT = "timeout"
    """No result within [outcomes] result_timeout_seconds (with `unknown`)."""
    DO_NOT_CALL = "do_not_call"
    """The person asked not to be called (a do-not-call wrap-up)."""


@dataclass(frozen=True, slots=True)
class Evidence:
    """A backend's terminal answer about one call, normalised."""

    result: CallResult
    reason: str = ""
    """A ResultReason value, or the wrap-up code when that is all there is."""
    wrapup_code: str = ""
    do_not_call: bool = False
    """The wrap-up asks for the number to join the do-not-call list."""


@dataclass(frozen=True, slots=True)
class WrapupCodes:
    """What the contact center's wrap-up codes mean ([outcomes] in the config).

    A code in none of the sets keeps what the call's own evidence says (an agent talked with
    the customer: reached).
    """

    reached: frozenset[str] = frozenset()
    not_reached: frozenset[str] = frozenset()
    wrong_number: frozenset[str] = frozenset()
    do_not_call: frozenset[str] = frozenset()

    def apply(self, evidence: Evidence) -> Evidence:
        """`evidence` with its wrap-up code's meaning applied (the code wins over the legs)."""
        code = evidence.wrapup_code
        if not code:
            return evidence
        if code in self.do_not_call:
            return Evidence(
                CallResult.NOT_REACHED, ResultReason.DO_NOT_CALL, code, do_not_call=True
            )
        if code in self.wrong_number:
            return Evidence(CallResult.NOT_REACHED, ResultReason.WRONG_NUMBER, code)
        if code in self.not_reached:
            return Evidence(CallResult.NOT_REACHED, code, code)
        if code in self.reached:
            return Evidence(CallResult.REACHED, "", code)
        return evidence


@dataclass(frozen=True, slots=True, kw_only=True)
class LadderRules:
    """[reach]: how many attempts each priority gets, how far apart, how many per contact.

    Every priority has a value in each table (the config's defaults fill them: conf/).
    """

    max_attempts: dict[Priority, int]
    retry_after: dict[Priority, float]
    attempts_per_contact: dict[Priority, int]


@dataclass(frozen=True, slots=True)
class Next:
    """Attempt `n` goes out at `at`, to the contact at `contact` (or the next callable one)."""

    n: int
    contact: int
    at: float


@dataclass(frozen=True, slots=True)
class Stop:
    """The ladder ends: `reached`, or a task for a person (`task`) with `why`."""

    why: str
    task: bool


def designated_contact(n: int, contacts: int, per_contact: int) -> int:
    """The contact attempt `n` (1-based) is meant for: each gets `per_contact` tries in order.

    Past the last contact the ladder starts again from the first.
    """
    return ((n - 1) // max(1, per_contact)) % max(1, contacts)


def after_result(
    evidence: Evidence, *, n: int, priority: Priority, contacts: int, now: float, rules: LadderRules
) -> Next | Stop:
    """What follows attempt `n`'s terminal result.

    reached ends the ladder; unknown ends it with a task (the call may still be live at the
    contact center: a second one could ring the same person twice); a wrong number or a
    do-not-call request moves on to the next contact at once (it is pointless to try again);
    any other miss waits `retry_after` and tries the contact whose turn it is.
    """
    if evidence.result == CallResult.REACHED:
        return Stop("reached", task=False)
    if evidence.result == CallResult.UNKNOWN:
        return Stop("the call's result is unknown", task=True)
    if evidence.result == CallResult.PENDING:
        raise ValueError("a pending call has no result to act on")
    most = rules.max_attempts[priority]
    if n >= most:
        return Stop(f"not reached in {n} attempt{'s' if n != 1 else ''}", task=True)
    per = rules.attempts_per_contact[priority]
    contact = designated_contact(n + 1, contacts, per)
    unusable = evidence.reason in (ResultReason.WRONG_NUMBER, ResultReason.DO_NOT_CALL)
    if unusable or evidence.do_not_call:
        tried = designated_contact(n, contacts, per)
        if contacts <= 1:
            return Stop(f"the only contact's number is unusable ({evidence.reason})", task=True)
        if contact == tried:
            contact = (tried + 1) % contacts
        return Next(n + 1, contact, now)
    return Next(n + 1, contact, now + rules.retry_after[priority])


def mask_phone(phone: str) -> str:
    """A number as logs and records show it: country code and last two digits."""
    digits = phone.strip()
    if len(digits) <= 5:
        return "*" * len(digits)
    keep = 3 if digits.startswith("+") else 2
    return digits[:keep] + "*" * (len(digits) - keep - 2) + digits[-2:]
