"""Backoff, the blocking and async retries, the step runner and tell_later."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pykka
import pytest
import redis

from tests.conftest import wait_for
from tripline.actors._loop import LOOP_OUTAGE
from tripline.actors._retry import (
    Backoff,
    StepRunner,
    Steps,
    retry,
    retry_async,
    run_blocking,
    tell_later,
)
from tripline.actors.sensor import REDIS_OUTAGE

DOWN = redis.ConnectionError("Redis is away (test)")


@pytest.mark.parametrize(
    ("backoff", "delays", "total"),
    [
        pytest.param(
            REDIS_OUTAGE, [0.1, 0.2, 0.4, 0.8, 1.6, 3.0, 3.0], 9.1, id="shard-8-tries-9.1s"
        ),
        pytest.param(
            LOOP_OUTAGE,
            [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 8.0, 8.0, 8.0, 8.0],
            44.7,
            id="loop-12-tries-44.7s",
        ),
        pytest.param(
            Backoff(first=0.2, cap=5.0), [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0], None, id="no-limit"
        ),
    ],
)
def test_the_schedules(backoff: Backoff, delays: list[float], total: float | None) -> None:
    assert [backoff.delay(n) for n in range(1, len(delays) + 1)] == pytest.approx(delays)
    if total is None:
        assert backoff.total() == float("inf")
        assert not backoff.exhausted(10_000)
    else:
        assert backoff.total() == pytest.approx(total)
        assert backoff.attempts is not None
        assert not backoff.exhausted(backoff.attempts - 1)
        assert backoff.exhausted(backoff.attempts)


class Flaky:
    """Fails `failures` times with `error`, then answers 'ok'."""

    def __init__(self, failures: int, error: Exception = DOWN) -> None:
        self.left, self.error, self.calls = failures, error, 0

    def __call__(self) -> str:
        self.calls += 1
        if self.left:
            self.left -= 1
            raise self.error
        return "ok"


def test_retry_waits_out_an_outage_on_the_schedule() -> None:
    slept: list[float] = []
    assert retry(Flaky(3), Backoff(first=0.1, cap=0.3, attempts=4), sleep=slept.append) == "ok"
    assert slept == pytest.approx([0.1, 0.2, 0.3])


def test_retry_raises_the_last_failure_once_the_tries_are_spent() -> None:
    step, slept = Flaky(5), list[float]()
    with pytest.raises(redis.ConnectionError):
        retry(step, Backoff(first=0.1, cap=1.0, attempts=3), sleep=slept.append)
    assert (step.calls, len(slept)) == (3, 2)


def test_retry_lets_any_other_error_through_at_once() -> None:
    step = Flaky(1, redis.ResponseError("WRONGTYPE"))
    with pytest.raises(redis.ResponseError):
        retry(step, Backoff(first=0.1, cap=1.0, attempts=3), sleep=lambda _: None)
    assert step.calls == 1


def test_retry_async_waits_on_the_loop() -> None:
    step = Flaky(2)

    async def attempt() -> str:
        return step()

    answer = asyncio.run(retry_async(attempt, Backoff(first=0.001, cap=0.001, attempts=3)))
    assert (answer, step.calls) == ("ok", 3)


class Waker:
    """What the runner asks to be woken after: the test wakes it by hand."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def work(name: str, steps: list[Any], log: list[str]) -> Steps[None]:
    """Runs each step and notes its reply; notes an error thrown in, then goes on."""
    for n, step in enumerate(steps):
        try:
            reply = yield step
        except redis.RedisError as exc:
            log.append(f"{name}{n}:{type(exc).__name__}")
            continue
        log.append(f"{name}{n}:{reply}")


def test_an_outage_parks_the_work_and_holds_what_comes_behind_it_in_order() -> None:
    waker, log = Waker(), list[str]()
    runner = StepRunner(backoff=Backoff(first=0.1, cap=1.0, attempts=5), wake=waker, name="t")
    flaky = Flaky(2)
    runner.run(work("a", [lambda: 1, flaky, lambda: 3], log))
    assert (runner.waiting, waker.delays, log) == (True, [0.1], ["a0:1"])
    runner.run(work("b", [lambda: "b"], log))  # held: nothing overtakes the parked work
    assert (runner.held, log) == (1, ["a0:1"])
    runner.resume()  # fails again: parked anew, a longer wait
    assert (runner.waiting, waker.delays) == (True, [0.1, 0.2])
    runner.resume()
    assert not runner.waiting
    assert log == ["a0:1", "a1:ok", "a2:3", "b0:b"]
    assert flaky.calls == 3


def test_past_its_tries_the_outage_is_thrown_into_the_work() -> None:
    waker, log = Waker(), list[str]()
    runner = StepRunner(backoff=Backoff(first=0.1, cap=1.0, attempts=2), wake=waker, name="t")
    runner.run(work("a", [Flaky(5), lambda: "next"], log))
    runner.resume()
    assert log == ["a0:ConnectionError", "a1:next"]
    assert not runner.waiting


def test_an_error_the_work_does_not_catch_is_the_callers() -> None:
    def bare() -> Steps[None]:
        yield Flaky(1, redis.ResponseError("WRONGTYPE"))

    runner = StepRunner(backoff=REDIS_OUTAGE, wake=Waker(), name="t")
    with pytest.raises(redis.ResponseError):
        runner.run(bare())
    assert not runner.waiting


def test_run_blocking_returns_what_the_work_returns() -> None:
    def steps() -> Steps[int]:
        a: str = yield Flaky(1)
        b: int = yield lambda: 2
        return len(a) + b

    assert run_blocking(steps(), Backoff(first=0.001, cap=0.001, attempts=2)) == 4


class Inbox(pykka.ThreadingActor):
    def __init__(self, got: threading.Event) -> None:
        super().__init__()
        self.got = got

    def on_receive(self, message: Any) -> None:
        if message == "wake":
            self.got.set()


def test_tell_later_tells_after_the_delay_and_lets_a_stopped_actor_go() -> None:
    got = threading.Event()
    ref = Inbox.start(got)
    started = time.monotonic()
    tell_later(ref, "wake", 0.05)
    assert got.wait(2)
    assert time.monotonic() - started >= 0.05
    ref.stop()
    tell_later(ref, "wake", 0.0)  # dead by then: dropped, nothing raised on the timer thread
    later = threading.Event()
    tell_later(Inbox.start(later), "wake", 0.01)  # the timer thread lived on
    wait_for(later.is_set, timeout=2)
