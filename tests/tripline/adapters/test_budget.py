"""The shared GCRA budget in Redis: bursts, the rate, and bulk takes."""

from __future__ import annotations

import time

import pytest
import redis

from tripline.adapters.budget import PrepaidBudget, RateBudget
from tripline.adapters.store import Keys


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


class ScriptedBudget:
    """A RateBudget stand-in answering try_take from a script; records what was asked."""

    def __init__(self, *answers: tuple[int, float] | Exception) -> None:
        self.answers = list(answers)
        self.asked: list[int] = []
        self.taken = 0

    def try_take(self, up_to: int = 1, *, critical: bool = False) -> tuple[int, float]:
        assert not critical  # these scripts are of other work
        self.asked.append(up_to)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def _prepaid(budget: ScriptedBudget) -> PrepaidBudget:
    return PrepaidBudget(budget, ttl=0.1, most=32)  # type: ignore[arg-type]


def test_one_round_trip_takes_what_can_start_and_serves_it_within_the_ttl() -> None:
    budget = ScriptedBudget((3, 0.0), (1, 0.0))
    prepaid = _prepaid(budget)
    assert [prepaid.wait(10.0, queued=5, free=3) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert budget.asked == [3]  # min(queued, free): one round trip for three requests
    assert prepaid.wait(10.05, queued=5, free=3) == 0.0  # used up: asks again
    assert budget.asked == [3, 3]


def test_budget_not_used_within_the_ttl_is_let_go() -> None:
    budget = ScriptedBudget((3, 0.0), (1, 0.0))
    prepaid = _prepaid(budget)
    assert prepaid.wait(10.0, queued=3, free=3) == 0.0
    assert prepaid.wait(10.1001, queued=1, free=3) == 0.0  # past 0.1 s: the 2 left are gone
    assert budget.asked == [3, 1]


def test_when_none_fits_it_waits_and_does_not_ask_again_before_then() -> None:
    budget = ScriptedBudget((0, 0.25), (1, 0.0))
    prepaid = _prepaid(budget)
    assert prepaid.wait(10.0, queued=1, free=1) == 0.25
    assert prepaid.wait(10.2, queued=1, free=1) == pytest.approx(0.05)
    assert budget.asked == [1]  # no round trip before the budget said
    assert prepaid.wait(10.25, queued=1, free=1) == 0.0


def test_redis_away_means_wait_a_second_never_an_uncounted_request() -> None:
    prepaid = _prepaid(ScriptedBudget(redis.ConnectionError("down")))
    assert prepaid.wait(10.0, queued=1, free=1) == 1.0


def test_the_recent_pace_sizes_what_is_taken_under_load() -> None:
    budget = ScriptedBudget((1, 0.0), (8, 0.0))
    prepaid = _prepaid(budget)
    for n in range(8):
        prepaid.started(10.0 + n * 0.01)
    prepaid.wait(10.08, queued=1, free=1)
    assert budget.asked[0] >= 1
    prepaid.wait(10.2, queued=1, free=1)
    assert max(budget.asked) > 1  # the pace, not just what can start, is prepaid


def reserved(client: redis.Redis, prefix: str) -> RateBudget:
    """1/s, bursts of 5, two of them for critical calls only."""
    return RateBudget(
        key=Keys(prefix).rate(), rate_per_minute=60, burst=5, client=client, critical_reserve=2
    )


def test_a_budget_used_up_by_other_work_still_has_its_reserve_for_critical_calls(
    redis_client: redis.Redis, prefix: str
) -> None:
    budget = reserved(redis_client, prefix)
    assert budget.try_take(32)[0] == 3  # the others' burst: 5 less the reserve
    got, wait = budget.try_take(1)
    assert got == 0
    assert 0 < wait <= 1.0
    assert budget.try_take(1, critical=True) == (1, 0.0)  # at once, from the reserve
    assert budget.try_take(1, critical=True) == (1, 0.0)
    got, wait = budget.try_take(1, critical=True)  # the reserve is spent too: the rate holds
    assert got == 0
    assert 0 < wait <= 1.0


def test_prepaid_critical_requests_take_the_reserve_and_only_themselves(
    redis_client: redis.Redis, prefix: str
) -> None:
    budget = reserved(redis_client, prefix)
    prepaid = PrepaidBudget(budget, ttl=0.1, most=32)
    now = time.monotonic()
    for _ in range(3):
        assert prepaid.wait(now, queued=100, free=100) == 0.0
    assert prepaid.wait(now, queued=100, free=100) > 0  # the others wait for the rate
    assert prepaid.wait(now, queued=100, free=100, critical=True) == 0.0  # a critical one not
    assert budget.taken == 4  # the critical request took one, not a prepaid batch
    assert prepaid.wait(now, queued=100, free=100) > 0  # and left the last for the next one
    assert prepaid.wait(now, queued=100, free=100, critical=True) == 0.0


@pytest.mark.parametrize(("burst", "reserve", "others"), [(5, 9, 1), (1, 2, 1), (5, 0, 5)])
def test_the_reserve_leaves_the_other_work_one_request_of_the_burst_at_least(
    redis_client: redis.Redis, prefix: str, burst: int, reserve: int, others: int
) -> None:
    budget = RateBudget(
        key=Keys(prefix).rate(),
        rate_per_minute=60,
        burst=burst,
        client=redis_client,
        critical_reserve=reserve,
    )
    assert budget.try_take(32)[0] == others
