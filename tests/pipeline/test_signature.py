"""Webhook signatures and bearer tokens: good, tampered, stale, malformed, oddly encoded."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tripline.pipeline.signature import bearer_matches, sign, token_matches, verify

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


@pytest.mark.parametrize(
    "timestamp",
    [
        pytest.param(f"{int(NOW):_}", id="underscores-are-not-digits"),
        pytest.param(
            "".join(chr(0x0660 + int(d)) for d in str(int(NOW))), id="arabic-indic-digits"
        ),
        pytest.param(
            str(int(NOW)).translate(
                str.maketrans("0123456789", "".join(chr(0xFF10 + d) for d in range(10)))
            ),
            id="fullwidth-digits",
        ),
        pytest.param(f"+{int(NOW)}", id="a-sign"),
        pytest.param(f" {int(NOW)}", id="a-leading-space"),
        pytest.param(f"{int(NOW)}\n", id="a-trailing-newline"),
        pytest.param("1" * 13, id="more-than-12-digits"),
        pytest.param("\udcff\udcfe", id="undecodable-bytes"),
    ],
)
def test_a_timestamp_is_ascii_digits_only(timestamp: str) -> None:
    # Signed as a lenient int() would read it: only the header's form can be refused.
    signature = sign(SECRET, int(NOW), BODY)
    result = check(timestamp, signature)
    assert result is not None
    assert "unix seconds" in result


@pytest.mark.parametrize(
    "signature",
    [
        pytest.param("sha256=\udcff" + GOOD[8:], id="undecodable-bytes"),
        pytest.param("sha256=" + "\u00e9" * 64, id="non-ascii"),
        pytest.param(GOOD.upper().replace("SHA256=", "sha256="), id="upper-case-hex"),
        pytest.param(GOOD + "00", id="too-long"),
        pytest.param(GOOD[:-2], id="too-short"),
    ],
)
def test_a_malformed_signature_is_refused_without_an_exception(signature: str) -> None:
    result = check(str(int(NOW)), signature)
    assert result is not None
    assert "sha256=" in result


@given(st.text(max_size=80), st.text(max_size=80))
def test_no_header_value_raises(timestamp: str, signature: str) -> None:
    assert check(timestamp, signature) is not None


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param(["Bearer tok-1"], True, id="bearer"),
        pytest.param(["bearer tok-1"], True, id="scheme-in-lower-case"),
        pytest.param(["BEARER tok-1"], True, id="scheme-in-upper-case"),
        pytest.param(["Bearer   tok-1"], True, id="several-spaces"),
        pytest.param(["Bearer tok-2"], False, id="wrong-token"),
        pytest.param(["Bearer tok-1x"], False, id="longer-token"),
        pytest.param(["Basic tok-1"], False, id="other-scheme"),
        pytest.param(["tok-1"], False, id="no-scheme"),
        pytest.param(["Bearer"], False, id="no-token"),
        pytest.param([], False, id="no-header"),
        pytest.param(["Bearer tok-1", "Bearer tok-1"], False, id="repeated-header"),
        pytest.param(["Bearer \udcff\udcfe"], False, id="undecodable-bytes"),
        pytest.param(["B\udcffarer tok-1"], False, id="undecodable-scheme"),
        pytest.param(["Bearer t\u00f6k-1"], False, id="non-ascii-token"),
        pytest.param(["\u0130nvalid tok-1"], False, id="non-ascii-scheme"),
    ],
)
def test_bearer_matches(values: list[str], expected: bool) -> None:
    assert bearer_matches(values, "tok-1") is expected


def test_an_empty_token_matches_nothing() -> None:
    assert not bearer_matches(["Bearer "], "")
    assert not token_matches("", "")


@given(st.text(max_size=40))
def test_any_given_value_is_compared_without_an_exception(given_value: str) -> None:
    assert token_matches(given_value, "tok-1") is (given_value == "tok-1")
    assert bearer_matches([given_value], "tok-1") in (True, False)
