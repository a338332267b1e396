"""Webhook signatures: HMAC-SHA256 over the timestamp and the raw body, with a replay window.

The sender computes `hex(HMAC-SHA256(secret, f"{timestamp}." + body))` and sends
`X-Tripline-Timestamp: <unix seconds>` and `X-Tripline-Signature: sha256=<hex>` (the scheme of
Stripe's and Slack's webhooks). The timestamp is inside the signature, so an old capture cannot
be replayed with a fresh one; the idempotency key stops a replay inside the window.
"""

from __future__ import annotations

import hashlib
import hmac

TIMESTAMP_HEADER = "X-Tripline-Timestamp"
SIGNATURE_HEADER = "X-Tripline-Signature"
_PREFIX = "sha256="


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header value for `body` sent at `timestamp` (what a sender computes)."""
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
    refused before any HMAC is computed.
    """
    if not timestamp or not signature:
        return f"missing {TIMESTAMP_HEADER} or {SIGNATURE_HEADER} header"
    try:
        sent_at = int(timestamp)
    except ValueError:
        return f"{TIMESTAMP_HEADER} must be unix seconds"
    if abs(now - sent_at) > max_skew:
        return f"{TIMESTAMP_HEADER} is outside the {max_skew:.0f} s replay window"
    if not signature.startswith(_PREFIX):
        return f"{SIGNATURE_HEADER} must look like sha256=<hex>"
    expected = sign(secret, sent_at, body)
    if not hmac.compare_digest(expected.encode(), signature.strip().encode()):
        return "signature does not match the body"
    return None
