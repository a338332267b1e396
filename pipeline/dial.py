"""Dial policy: how a backend answer is classified, Retry-After, and retry backoff.

The rate budget itself is a GCRA in Redis (tripline/adapters/store.py GCRA_LUA), shared by
instances.
"""

from __future__ import annotations

from enum import StrEnum


class Answer(StrEnum):
    """What a contact-center answer means for the work that caused it."""

    DONE = "done"  # 2xx: the call (or task) exists
    RATE_LIMITED = "rate_limited"  # 429: not processed; pause for Retry-After, then resend
    UNSENT = "unsent"  # provably never reached the server: safe to resend
    FAILED = "failed"  # permanent 4xx: resending would fail the same way
    UNCERTAIN = "uncertain"  # may have been processed: never resend blindly


# 502 and 503 come from a gateway or an overloaded front that did not take the request; 500 and
# 504 can arrive after the backend acted, so they are as ambiguous as a timeout.
_RETRYABLE_5XX = frozenset({502, 503})


def classify(status: int | None, *, sent: bool) -> Answer:
    """Classify an HTTP answer (status) or a transport failure (status None).

    Args:
        status: the HTTP status, or None when no response arrived.
        sent: for a transport failure, whether the request may have reached the server
            (False only for failures in the connect phase).

    Returns:
        The classification the retry policy acts on.
    """
    if status is None:
        return Answer.UNCERTAIN if sent else Answer.UNSENT
    if 200 <= status < 300:
        return Answer.DONE
    if status == 429:
        return Answer.RATE_LIMITED
    if status in _RETRYABLE_5XX:
        return Answer.UNSENT
    if status >= 500:
        return Answer.UNCERTAIN
    return Answer.FAILED


def retry_after(header: str | None, *, default: float, cap: float = 600.0) -> float:
    """Seconds to wait from a Retry-After header (seconds form); `default` when absent or bad."""
    try:
        value = float(header) if header is not None else default
    except ValueError:
        return default
    return min(max(value, 0.0), cap)


def backoff(attempt: int, *, base: float, cap: float, jitter: float) -> float:
    """Exponential backoff with full jitter: attempt 0 waits up to `base`, doubling to `cap`.

    Args:
        attempt: how many attempts failed so far, from 0.
        base: the first delay.
        cap: the longest delay.
        jitter: a number in [0, 1) (random in production, fixed in tests).
    """
    return float(min(cap, base * 2.0**attempt) * (0.5 + jitter / 2))


class Gate(StrEnum):
    """The last checks before a call leaves, taken together: may it dial?"""

    DIAL = "dial"
    DO_NOT_CALL = "do_not_call"  # the number joined the do-not-call list while queued
    NUMBER_CAP = "number_cap"
    CUSTOMER_CAP = "customer_cap"


def gate(
    *, on_dnc_list: bool, number_ok: bool | None, customer_ok: bool | None
) -> tuple[Gate, tuple[str, ...]]:
    """Decide on the do-not-call re-check and the caps, which were all asked at once.

    Args:
        on_dnc_list: the number is on the internal do-not-call list now.
        number_ok: the number's cap counted this call (None: no number cap configured).
        customer_ok: the customer's cap counted this call (None: no customer cap).

    Returns:
        The verdict, and the caps ('number', 'customer') that counted this call and must give
        it back because it will not be placed.
    """
    if on_dnc_list:
        verdict = Gate.DO_NOT_CALL
    elif number_ok is False:
        verdict = Gate.NUMBER_CAP
    elif customer_ok is False:
        verdict = Gate.CUSTOMER_CAP
    else:
        return Gate.DIAL, ()
    taken = (("number", number_ok), ("customer", customer_ok))
    return verdict, tuple(name for name, ok in taken if ok)
