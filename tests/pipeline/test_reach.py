"""The re-attempt ladder's decisions and the wrap-up codes' meaning: tables and properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tripline.messages import Priority
from tripline.pipeline.reach import (
    CallResult,
    Evidence,
    LadderRules,
    Next,
    ResultReason,
    Stop,
    WrapupCodes,
    after_result,
    designated_contact,
    mask_phone,
)

NOW = 1_000_000.0
RULES = LadderRules(
    max_attempts={Priority.CRITICAL: 4, Priority.HIGH: 3, Priority.NORMAL: 1, Priority.LOW: 1},
    retry_after={
        Priority.CRITICAL: 300.0,
        Priority.HIGH: 600.0,
        Priority.NORMAL: 900.0,
        Priority.LOW: 900.0,
    },
    attempts_per_contact={
        Priority.CRITICAL: 2,
        Priority.HIGH: 1,
        Priority.NORMAL: 1,
        Priority.LOW: 1,
    },
)
MISS = Evidence(CallResult.NOT_REACHED, ResultReason.NO_ANSWER)


@pytest.mark.parametrize(
    ("n", "contacts", "per", "expected"),
    [
        (1, 1, 1, 0),
        (2, 1, 1, 0),
        (1, 3, 2, 0),
        (2, 3, 2, 0),  # the primary twice
        (3, 3, 2, 1),  # then the next contact
        (4, 3, 2, 1),
        (5, 3, 2, 2),
        (7, 3, 2, 0),  # past the last contact: from the first again
        (2, 2, 1, 1),
        (3, 2, 1, 0),
        (1, 0, 1, 0),  # no contacts known: the customer's own phone
        (3, 1, 1, 0),  # one contact: always it
        (4, 0, 2, 0),
    ],
)
def test_designated_contact(n: int, contacts: int, per: int, expected: int) -> None:
    assert designated_contact(n, contacts, per) == expected


@pytest.mark.parametrize(
    ("evidence", "n", "priority", "contacts", "expected"),
    [
        # reached always ends, whatever is left
        (Evidence(CallResult.REACHED), 1, Priority.CRITICAL, 3, Stop("reached", task=False)),
        # unknown ends with a task: the call may still ring; a second one could double it
        (
            Evidence(CallResult.UNKNOWN, ResultReason.TIMEOUT),
            1,
            Priority.CRITICAL,
            3,
            Stop("the call's result is unknown", task=True),
        ),
        # a miss: the same contact again after the delay (two per contact for critical)
        (MISS, 1, Priority.CRITICAL, 3, Next(2, 0, NOW + 300)),
        # then the next contact
        (MISS, 2, Priority.CRITICAL, 3, Next(3, 1, NOW + 300)),
        (MISS, 3, Priority.CRITICAL, 3, Next(4, 1, NOW + 300)),
        # the last attempt: a task
        (MISS, 4, Priority.CRITICAL, 3, Stop("not reached in 4 attempts", task=True)),
        # high: one per contact, its own delay
        (MISS, 1, Priority.HIGH, 2, Next(2, 1, NOW + 600)),
        (MISS, 3, Priority.HIGH, 2, Stop("not reached in 3 attempts", task=True)),
        # low: one attempt
        (MISS, 1, Priority.LOW, 3, Stop("not reached in 1 attempt", task=True)),
        # a wrong number moves on at once, to the next contact even if it was this one's turn
        (
            Evidence(CallResult.NOT_REACHED, ResultReason.WRONG_NUMBER),
            1,
            Priority.CRITICAL,
            3,
            Next(2, 1, NOW),
        ),
        (
            Evidence(CallResult.NOT_REACHED, ResultReason.DO_NOT_CALL, "DNC", do_not_call=True),
            2,
            Priority.CRITICAL,
            2,
            Next(3, 1, NOW),
        ),
        # ... and with no other contact, the ladder ends with a task
        (
            Evidence(CallResult.NOT_REACHED, ResultReason.WRONG_NUMBER),
            1,
            Priority.CRITICAL,
            1,
            Stop("the only contact's number is unusable (wrong_number)", task=True),
        ),
    ],
)
def test_after_result(
    evidence: Evidence, n: int, priority: Priority, contacts: int, expected: Next | Stop
) -> None:
    assert (
        after_result(evidence, n=n, priority=priority, contacts=contacts, now=NOW, rules=RULES)
        == expected
    )


def test_a_pending_result_is_not_acted_on() -> None:
    with pytest.raises(ValueError, match=r"^a pending call has no result to act on$"):
        after_result(
            Evidence(CallResult.PENDING),
            n=1,
            priority=Priority.HIGH,
            contacts=1,
            now=NOW,
            rules=RULES,
        )


@given(
    n=st.integers(min_value=1, max_value=30),
    contacts=st.integers(min_value=1, max_value=6),
    priority=st.sampled_from(list(Priority)),
    reason=st.sampled_from([r.value for r in ResultReason] + ["AGENT-CODE"]),
)
def test_the_ladder_never_exceeds_max_attempts_and_never_goes_back_in_time(
    n: int, contacts: int, priority: Priority, reason: str
) -> None:
    step = after_result(
        Evidence(CallResult.NOT_REACHED, reason),
        n=n,
        priority=priority,
        contacts=contacts,
        now=NOW,
        rules=RULES,
    )
    if isinstance(step, Next):
        assert step.n == n + 1 <= RULES.max_attempts[priority]
        assert 0 <= step.contact < contacts
        assert step.at >= NOW
    else:
        assert step.task  # a miss never ends the ladder silently


CODES = WrapupCodes(
    reached=frozenset({"RESOLVED"}),
    not_reached=frozenset({"LEFT-MESSAGE"}),
    wrong_number=frozenset({"WRONG"}),
    do_not_call=frozenset({"DNC"}),
)


@pytest.mark.parametrize(
    ("given_", "expected"),
    [
        # no code: the legs' evidence stands
        (MISS, MISS),
        # an unmapped code keeps the legs' evidence
        (
            Evidence(CallResult.REACHED, "", "OTHER"),
            Evidence(CallResult.REACHED, "", "OTHER"),
        ),
        # each mapped code wins over the legs
        (
            Evidence(CallResult.NOT_REACHED, ResultReason.NO_ANSWER, "RESOLVED"),
            Evidence(CallResult.REACHED, "", "RESOLVED"),
        ),
        (
            Evidence(CallResult.REACHED, "", "LEFT-MESSAGE"),
            Evidence(CallResult.NOT_REACHED, "LEFT-MESSAGE", "LEFT-MESSAGE"),
        ),
        (
            Evidence(CallResult.REACHED, "", "WRONG"),
            Evidence(CallResult.NOT_REACHED, ResultReason.WRONG_NUMBER, "WRONG"),
        ),
        (
            Evidence(CallResult.REACHED, "", "DNC"),
            Evidence(CallResult.NOT_REACHED, ResultReason.DO_NOT_CALL, "DNC", do_not_call=True),
        ),
    ],
)
def test_wrapup_codes(given_: Evidence, expected: Evidence) -> None:
    assert CODES.apply(given_) == expected


@pytest.mark.parametrize(
    ("phone", "masked"),
    [
        ("+14155550100", "+14*******00"),
        ("+442079460123", "+44********23"),
        ("0791234567", "07******67"),
        ("+123", "****"),
        ("+1234", "*****"),  # five characters: nothing shown
        ("+12345", "+12*45"),
        ("", ""),
    ],
)
def test_mask_phone(phone: str, masked: str) -> None:
    assert mask_phone(phone) == masked


@given(st.text(alphabet="+0123456789", min_size=6, max_size=20))
def test_a_masked_phone_keeps_its_length_and_hides_the_middle(phone: str) -> None:
    masked = mask_phone(phone)
    assert len(masked) == len(phone)
    assert masked[-2:] == phone[-2:]
    assert sum(c.isdigit() for c in masked) <= 4


def test_the_vocabulary_is_the_records_and_metrics_words() -> None:
    # What records, metrics and operators' queries spell: a rename breaks every one of them.
    assert [r.value for r in CallResult] == ["pending", "reached", "not_reached", "unknown"]
    assert [r.value for r in ResultReason] == [
        "no_answer",
        "busy",
        "voicemail",
        "failed",
        "wrong_number",
        "abandoned",
        "canceled",
        "timeout",
        "do_not_call",
    ]


def test_evidence_says_nothing_it_was_not_told() -> None:
    evidence = Evidence(CallResult.REACHED)
    assert (evidence.reason, evidence.wrapup_code, evidence.do_not_call) == ("", "", False)


def test_no_wrapup_codes_configured_keeps_the_legs_evidence() -> None:
    coded = Evidence(CallResult.REACHED, "", "ANY")
    assert WrapupCodes().apply(coded) == coded
