"""Request credentials: bearer tokens, and webhook signatures (HMAC-SHA256) with a replay window.

The sender computes `hex(HMAC-SHA256(secret, f"{timestamp}." + body))` and sends
`X-Tripline-Timestamp: <unix seconds>` and `X-Tripline-Signature: sha256=<hex>` (the scheme of
Stripe's and Slack's webhooks). The timestamp is inside the signature, so an old capture cannot
be replayed with a fresh one; the idempotency key stops a replay inside the window.

Header values reach us as text that may hold anything a client sent: aiohttp decodes header
bytes as UTF-8 with `surrogateescape`, so a byte 0xFF arrives as a lone surrogate, which
`str.encode()` refuses. Every comparison here survives any such value and answers "no".
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence

TIMESTAMP_HEADER = "X-Tripline-Timestamp"
SIGNATURE_HEADER = "X-Tripline-Signature"
_PREFIX = "sha256="
# ASCII digits only: int() also takes "1_800_000_000", "+1800000000" and other scripts' digits.
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"sha256=[0-9a-f]{64}")


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header value for `body` sent at `timestamp` (what a sender computes)."""
    return _mac(secret, str(timestamp), body)


def _mac(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return _PREFIX + mac.hexdigest()


def verify(
    secret: str,
    *,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    now: float,
    max_skew: float,
) -> str | None:
    """None when the signature is good; otherwise why not, for the 401 problem.

    The comparison is constant-time; a timestamp outside `max_skew` of `now`, either way, is
    refused before any HMAC is computed. The MAC covers the timestamp exactly as it was sent.
    """
    if not timestamp or not signature:
        return f"missing {TIMESTAMP_HEADER} or {SIGNATURE_HEADER} header"
    if not _TIMESTAMP.fullmatch(timestamp):
        return f"{TIMESTAMP_HEADER} must be unix seconds (1 to 12 ASCII digits)"
    if abs(now - int(timestamp)) > max_skew:
        return f"{TIMESTAMP_HEADER} is outside the {max_skew:.0f} s replay window"
    if not _SIGNATURE.fullmatch(signature):
        return f"{SIGNATURE_HEADER} must look like sha256=<64 lower-case hex digits>"
    if not hmac.compare_digest(_mac(secret, timestamp, body), signature):
        return "signature does not match the body"
    return None


def token_matches(given: str, token: str) -> bool:
    """Whether `given` is `token`, in constant time; never for an empty token.

    Args:
        given: what the request carried, possibly with undecodable bytes (lone surrogates).
        token: the configured secret.

    Returns:
        True only for an exact match.
    """
    # surrogatepass encodes any str: a value with odd bytes is simply different.
    return bool(token) and hmac.compare_digest(
        given.encode("utf-8", "surrogatepass"), token.encode("utf-8", "surrogatepass")
    )


def bearer_token(value: str) -> str | None:
    """The credentials of an `Authorization: Bearer <token>` value, else None.

    The scheme is case-insensitive (RFC 7235 section 2.1: `bearer` is `Bearer`); one or
    more spaces separate it from the token.
    """
    scheme, space, rest = value.partition(" ")
    if not space or not scheme.isascii() or scheme.lower() != "bearer":
        return None
    return rest.lstrip(" ") or None


def bearer_matches(values: Sequence[str], token: str) -> bool:
    """Whether the request's Authorization headers carry `Bearer <token>`.

    Args:
        values: every Authorization header of the request; more than one is refused, since
            a proxy and tripline could each read a different one.
        token: the configured secret; empty matches nothing.

    Returns:
        True for exactly one header with the right token.
    """
    if len(values) != 1:
        return False
    given = bearer_token(values[0])
    return given is not None and token_matches(given, token)
