"""The shared GCRA budget in Redis: bursts, the rate, and bulk takes."""

from __future__ import annotations

import time

import redis

from tripline.budget import RateBudget
from tripline.store import Keys


def test_a_burst_then_the_rate_never_more(redis_client: redis.Redis, prefix: str) -> None:
    budget = RateBudget(key=Keys(prefix).rate(), rate_per_minute=600, burst=3, client=redis_client)
    start, taken = time.monotonic(), 0
    while time.monotonic() - start < 1.0:
        got, wait = budget.try_take()
        taken += got
        assert (got, wait > 0) in ((1, False), (0, True))
    elapsed = time.monotonic() - start
    assert taken >= 3  # the burst was there
    assert taken <= 3 + 10 * elapsed + 1  # 10/s after it (+1: millisecond granularity)


def test_bulk_take_is_capped_by_the_burst_and_shared(
    redis_client: redis.Redis, prefix: str
) -> None:
    key = Keys(prefix).rate()
    one = RateBudget(key=key, rate_per_minute=60, burst=5, client=redis_client)
    other = RateBudget(key=key, rate_per_minute=60, burst=5, client=redis_client)
    assert one.try_take(32)[0] == 5
    got, wait = other.try_take(1)  # the other instance sees the same budget
    assert got == 0
    assert 0 < wait <= 1.0
