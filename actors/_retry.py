"""Trying again: one backoff schedule, and the ways an actor waits on it.

An actor's thread must not sleep: while it does, every message behind it waits (a critical
alert of another sensor, the supervisor's questions, the stop). So an actor parks what failed
and has `tell_later` wake it (one timer thread for the process); `StepRunner` does the parking
for work written as a generator of Redis steps. `retry` blocks, for the few places that may
wait (an actor's on_stop, the supervisor); `retry_async` awaits, on an actor's event loop, where
other tasks go on meanwhile.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar

import pykka
import redis

T = TypeVar("T")

log = logging.getLogger("tripline.retry")

OUTAGE: tuple[type[Exception], ...] = (redis.ConnectionError, redis.TimeoutError)
"""Redis away as a whole, not an error about one command: worth trying again."""


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff: `first` seconds after the first failure, doubling up to `cap`."""

    first: float
    """The wait after the first failure in a row."""
    cap: float
    """The longest wait."""
    attempts: int | None = None
    """Tries in all before giving up; None: never give up (the caller decides when to stop)."""

    def delay(self, failures: int) -> float:
        """The wait after `failures` failures in a row (from 1).

        Args:
            failures: how many tries failed in a row so far.

        Returns:
            Seconds: first x 2^(failures-1), at most cap.
        """
        return min(self.cap, self.first * 2.0 ** (failures - 1))

    def exhausted(self, failures: int) -> bool:
        """Whether `failures` failures in a row use up the attempts (never, without a limit)."""
        return self.attempts is not None and failures >= self.attempts

    def total(self) -> float:
        """Seconds of waiting between the first try and the last (inf without a limit)."""
        if self.attempts is None:
            return float("inf")
        return sum(self.delay(n) for n in range(1, self.attempts))


def retry(
    step: Callable[[], T],
    backoff: Backoff,
    *,
    on: tuple[type[Exception], ...] = OUTAGE,
    sleep: Callable[[float], object] = time.sleep,
) -> T:
    """Run `step`, waiting and trying again while it raises one of `on`; blocks the caller.

    Not for an actor's handler (see the module's docstring).

    Args:
        step: what to run; called anew each try.
        backoff: how long to wait after each failure, and how many tries in all.
        on: the exceptions worth trying again; any other goes straight to the caller.
        sleep: how to wait (tests pass a fake).

    Returns:
        What `step` returned. The last failure is raised once the attempts are spent.
    """
    failures = 0
    while True:
        try:
            return step()
        except on:
            failures += 1
            if backoff.exhausted(failures):
                raise
            sleep(backoff.delay(failures))


async def retry_async(
    step: Callable[[], Awaitable[T]],
    backoff: Backoff,
    *,
    on: tuple[type[Exception], ...] = OUTAGE,
) -> T:
    """`retry` on an event loop: the wait is an `asyncio.sleep`, other tasks go on meanwhile.

    Args:
        step: makes the awaitable to run; called anew each try.
        backoff: how long to wait after each failure, and how many tries in all.
        on: the exceptions worth trying again.

    Returns:
        What `step`'s awaitable returned. The last failure is raised once the attempts are spent.
    """
    failures = 0
    while True:
        try:
            return await step()
        except on:
            failures += 1
            if backoff.exhausted(failures):
                raise
            await asyncio.sleep(backoff.delay(failures))


class Later:
    """Tells actors messages after a delay, from one daemon thread for the process.

    Not a threading.Timer per wait: each would start a thread, and the subscriber lingers up to
    40 times a second under load.
    """

    def __init__(self) -> None:
        """Start empty; the thread starts with the first message."""
        self._due: list[tuple[float, int, pykka.ActorRef[Any], object]] = []
        self._seq = itertools.count()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def tell(self, ref: pykka.ActorRef[Any], message: object, delay: float) -> None:
        """Tell `message` to `ref` in `delay` seconds; an actor stopped by then is let go."""
        with self._changed:
            heapq.heappush(self._due, (time.monotonic() + delay, next(self._seq), ref, message))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="tell-later", daemon=True)
                self._thread.start()
            self._changed.notify()

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._due or self._due[0][0] > time.monotonic():
                    self._changed.wait(self._due[0][0] - time.monotonic() if self._due else None)
                _, _, ref, message = heapq.heappop(self._due)
            try:
                ref.tell(message)
            except pykka.ActorDeadError:
                pass  # stopped meanwhile: its replacement starts from what Redis holds
            except Exception:  # the thread serves every actor: it must outlive any one tell
                log.exception("telling %r later failed", message)


_LATER = Later()


def tell_later(ref: pykka.ActorRef[Any], message: object, delay: float) -> None:
    """Tell `message` to `ref` after `delay` seconds, without blocking the caller.

    An actor that stopped meanwhile is let go: its replacement starts from what Redis holds.

    Args:
        ref: the actor, usually the caller itself (`self.actor_ref`).
        message: what to tell it.
        delay: seconds from now.
    """
    _LATER.tell(ref, message, delay)


Step: TypeAlias = Callable[[], Any]
"""One Redis round trip, run as it is (a failed one is run again from scratch)."""
Steps: TypeAlias = Generator[Step, Any, T]
"""Work that yields its Redis steps and is sent each step's reply (or thrown its error)."""


class StepRunner:
    """Runs an actor's work step by step; an outage parks it without holding the thread.

    A step that meets a Redis outage parks its work where it stands, and `wake` is asked to
    bring the actor back (`resume`) after the backoff's delay; the step then runs again. Work
    that arrives meanwhile is held behind it and runs after it, in the order it came, so
    nothing overtakes what waits (one sensor's alerts stay in order) and no two pieces of work
    are ever half done at once. Past the backoff's attempts the outage is thrown into the work,
    as any other error of a step: what the work does not catch is the actor's failure.
    """

    def __init__(self, *, backoff: Backoff, wake: Callable[[float], None], name: str) -> None:
        """Keep the schedule, how to be woken, and a name for the log."""
        self._backoff, self._wake, self._name = backoff, wake, name
        self._parked: tuple[Steps[None], Step, int] | None = None
        self._held: deque[Steps[None]] = deque()

    @property
    def waiting(self) -> bool:
        """Whether work is parked on an outage (what comes meanwhile is held behind it)."""
        return self._parked is not None

    @property
    def held(self) -> int:
        """How many pieces of work wait behind the parked one."""
        return len(self._held)

    def run(self, work: Steps[None]) -> None:
        """Run `work` now, or hold it behind the parked work."""
        if self._parked is not None:
            self._held.append(work)
            return
        self._drive(work, None, 0)

    def resume(self) -> None:
        """Try the parked step again; once its work is done, the held work, in order."""
        if self._parked is None:
            return
        work, step, failures = self._parked
        self._parked = None
        self._drive(work, step, failures)
        while self._parked is None and self._held:
            self._drive(self._held.popleft(), None, 0)

    def _drive(self, work: Steps[None], step: Step | None, failures: int) -> None:
        reply: Any = None
        error: Exception | None = None
        while True:
            if step is None:
                try:
                    step = work.send(reply) if error is None else work.throw(error)
                except StopIteration:
                    return
                reply = error = None
            try:
                reply = step()
            except OUTAGE as exc:
                failures += 1
                if not self._backoff.exhausted(failures):
                    self._parked = (work, step, failures)
                    delay = self._backoff.delay(failures)
                    log.warning("%s: Redis unavailable, retrying in %.1fs", self._name, delay)
                    self._wake(delay)
                    return
                error = exc
            except Exception as exc:  # the work's to handle, as if the step had run in it
                error = exc
            step, failures = None, 0


def run_blocking(work: Steps[T], backoff: Backoff) -> T:
    """Run `work` to its end on this thread, waiting out an outage between tries (`retry`).

    For an actor's on_stop, after which nothing waits on the thread.

    Args:
        work: the steps.
        backoff: how long to wait after each failure of a step, and how many tries in all.

    Returns:
        What the work returns.
    """
    reply: Any = None
    error: Exception | None = None
    while True:
        try:
            step = work.send(reply) if error is None else work.throw(error)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        reply = error = None
        try:
            reply = retry(step, backoff)
        except Exception as exc:  # the work's to handle
            error = exc
