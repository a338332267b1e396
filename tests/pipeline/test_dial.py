"""Dial policy: token bucket, answer classification, Retry-After and backoff."""

from __future__ import annotations

import pytest

from pipeline.dial import Answer, backoff, classify, retry_after


@pytest.mark.parametrize(
    ("status", "sent", "answer"),
    [
        pytest.param(200, True, Answer.DONE, id="2xx-done"),
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
