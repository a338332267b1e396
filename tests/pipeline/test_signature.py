"""Webhook signatures: good, tampered, stale, malformed."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.signature import sign, verify

SECRET = "s3cret"
NOW = 1_800_000_000.0
BODY = b'{"idempotencyKey": "k"}'


def check(timestamp: str | None, signature: str | None, body: bytes = BODY) -> str | None:
    return verify(
        SECRET, timestamp=timestamp, signature=signature, body=body, now=NOW, max_skew=300
    )


GOOD = sign(SECRET, int(NOW), BODY)


@pytest.mark.parametrize(
    ("timestamp", "signature", "body", "problem"),
    [
        pytest.param(str(int(NOW)), GOOD, BODY, None, id="good"),
        pytest.param(
            str(int(NOW) - 300), sign(SECRET, int(NOW) - 300, BODY), BODY, None, id="edge-of-window"
        ),
        pytest.param(
            str(int(NOW) - 301),
            sign(SECRET, int(NOW) - 301, BODY),
            BODY,
            "replay window",
            id="too-old",
        ),
        pytest.param(
            str(int(NOW) + 301),
            sign(SECRET, int(NOW) + 301, BODY),
            BODY,
            "replay window",
            id="from-the-future",
        ),
        pytest.param(str(int(NOW)), GOOD, BODY + b" ", "does not match", id="body-changed"),
        pytest.param(str(int(NOW) - 1), GOOD, BODY, "does not match", id="timestamp-changed"),
        pytest.param(
            str(int(NOW)), sign("other", int(NOW), BODY), BODY, "does not match", id="wrong-secret"
        ),
        pytest.param(None, GOOD, BODY, "missing", id="no-timestamp"),
        pytest.param(str(int(NOW)), None, BODY, "missing", id="no-signature"),
        pytest.param("yesterday", GOOD, BODY, "unix seconds", id="bad-timestamp"),
        pytest.param(str(int(NOW)), GOOD.removeprefix("sha256="), BODY, "sha256=", id="no-scheme"),
    ],
)
def test_verify(
    timestamp: str | None, signature: str | None, body: bytes, problem: str | None
) -> None:
    result = check(timestamp, signature, body)
    if problem is None:
        assert result is None
    else:
        assert result is not None
        assert problem in result


@given(st.binary(max_size=256), st.binary(min_size=1, max_size=8))
def test_any_change_to_the_body_is_caught(body: bytes, extra: bytes) -> None:
    signature = sign(SECRET, int(NOW), body)
    assert check(str(int(NOW)), signature, body) is None
    assert check(str(int(NOW)), signature, body + extra) is not None
