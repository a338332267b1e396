"""Dial policy: token bucket, answer classification, Retry-After and backoff."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tripline.pipeline.dial import Answer, Gate, backoff, classify, gate, retry_after


@pytest.mark.parametrize(
    ("status", "sent", "answer"),
    [
        pytest.param(200, True, Answer.DONE, id="2xx-done"),
        pytest.param(201, True, Answer.DONE, id="201-done"),
        pytest.param(299, True, Answer.DONE, id="299-done"),
        pytest.param(199, True, Answer.FAILED, id="1xx-is-no-call"),
        pytest.param(300, True, Answer.FAILED, id="300-is-no-call"),
        pytest.param(302, True, Answer.FAILED, id="redirect-is-no-call"),
        pytest.param(428, True, Answer.FAILED, id="428-permanent"),
        pytest.param(430, True, Answer.FAILED, id="430-permanent"),
        pytest.param(499, True, Answer.FAILED, id="499-permanent"),
        pytest.param(501, True, Answer.UNCERTAIN, id="501-may-have-acted"),
        pytest.param(599, True, Answer.UNCERTAIN, id="599-may-have-acted"),
        pytest.param(200, False, Answer.DONE, id="an-answer-is-an-answer-whatever-sent-says"),
        pytest.param(503, False, Answer.UNSENT, id="503-whatever-sent-says"),
        pytest.param(429, True, Answer.RATE_LIMITED, id="429-pause-and-resend"),
        pytest.param(503, True, Answer.UNSENT, id="503-not-taken"),
        pytest.param(502, True, Answer.UNSENT, id="502-gateway-not-taken"),
        pytest.param(500, True, Answer.UNCERTAIN, id="500-may-have-acted"),
        pytest.param(504, True, Answer.UNCERTAIN, id="504-may-have-acted"),
        pytest.param(400, True, Answer.FAILED, id="400-permanent"),
        pytest.param(None, False, Answer.UNSENT, id="connect-failure-safe-to-resend"),
        pytest.param(None, True, Answer.UNCERTAIN, id="timeout-after-send-never-resent"),
    ],
)
def test_classify(status: int | None, sent: bool, answer: Answer) -> None:
    assert classify(status, sent=sent) == answer


@pytest.mark.parametrize(
    ("header", "expected"),
    [("3", 3.0), ("0.5", 0.5), (None, 1.0), ("soon", 1.0), ("-4", 0.0), ("99999", 600.0)],
)
def test_retry_after(header: str | None, expected: float) -> None:
    assert retry_after(header, default=1.0) == expected


def test_backoff_doubles_to_its_cap() -> None:
    delays = [backoff(n, base=0.5, cap=4.0, jitter=1.0) for n in range(6)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert backoff(0, base=0.5, cap=4.0, jitter=0.0) == 0.25


@pytest.mark.parametrize(
    ("dnc", "number_ok", "customer_ok", "verdict", "release"),
    [
        (False, None, None, Gate.DIAL, ()),  # no caps configured
        (False, True, True, Gate.DIAL, ()),
        (False, True, None, Gate.DIAL, ()),
        (True, True, True, Gate.DO_NOT_CALL, ("number", "customer")),  # counted for nothing
        (True, None, None, Gate.DO_NOT_CALL, ()),
        (False, False, True, Gate.NUMBER_CAP, ("customer",)),
        (False, False, False, Gate.NUMBER_CAP, ()),
        (False, True, False, Gate.CUSTOMER_CAP, ("number",)),
        (False, None, False, Gate.CUSTOMER_CAP, ()),
        (True, False, False, Gate.DO_NOT_CALL, ()),  # do-not-call first: the stronger reason
    ],
)
def test_gate_decides_and_gives_back_what_counted_a_call_never_placed(
    dnc: bool,
    number_ok: bool | None,
    customer_ok: bool | None,
    verdict: Gate,
    release: tuple[str, ...],
) -> None:
    assert gate(on_dnc_list=dnc, number_ok=number_ok, customer_ok=customer_ok) == (
        verdict,
        release,
    )


@given(st.booleans(), st.sampled_from([None, True, False]), st.sampled_from([None, True, False]))
def test_gate_dials_only_when_nothing_objects_and_then_releases_nothing(
    dnc: bool, number_ok: bool | None, customer_ok: bool | None
) -> None:
    verdict, release = gate(on_dnc_list=dnc, number_ok=number_ok, customer_ok=customer_ok)
    objects = dnc or number_ok is False or customer_ok is False
    assert (verdict == Gate.DIAL) == (not objects)
    counted = {n for n, ok in (("number", number_ok), ("customer", customer_ok)) if ok}
    assert set(release) == (counted if objects else set())


def test_the_values_are_what_logs_and_records_say() -> None:
    assert [a.value for a in Answer] == ["done", "rate_limited", "unsent", "failed", "uncertain"]
    assert [g.value for g in Gate] == ["dial", "do_not_call", "number_cap", "customer_cap"]
