"""An asyncio loop on a thread of its own, for actors that do HTTP with aiohttp."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Future
from dataclasses import replace
from typing import Any, TypeVar

from tripline.actors._retry import Backoff, retry_async

T = TypeVar("T")

log = logging.getLogger("tripline.loop")


class LoopThread:
    """Owns one event loop; coroutines go in with submit, results come back as futures."""

    def __init__(self, name: str) -> None:
        """Start the loop thread and wait until it runs."""
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name=name, daemon=True)
        self._thread.start()
        ready.wait()

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(ready.set)
        self.loop.run_forever()

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        """Run `coro` on the loop; thread-safe."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        """Run `coro` on the loop and wait for its result (setup and teardown only)."""
        return self.submit(coro).result(timeout)

    def stop(self, closing: Callable[[], Coroutine[Any, Any, None]] | None = None) -> None:
        """Cancel what still runs, then run `closing` (close clients), stop, join the thread.

        Cancelling first: a task still running after its Redis pool was closed would open a
        fresh connection that nothing closes any more.
        """

        async def _cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        if self.loop.is_running():
            with contextlib.suppress(Exception):  # best effort at shutdown
                self.call(_cancel_all(), timeout=5.0)
            if closing is not None:
                try:
                    self.call(closing(), timeout=5.0)
                except Exception:
                    log.warning("closing %s failed", self._thread.name, exc_info=True)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=5.0)
        self.loop.close()


LOOP_OUTAGE = Backoff(first=0.1, cap=8.0, attempts=12)
"""~45 s of waiting over 12 tries (each try's own timeout comes on top): a loop's tasks wait out
a Redis restart or failover, other tasks going on meanwhile; past it the outage is the actor's."""


async def ride_out(step: Callable[[], Awaitable[T]], *, attempts: int = 12) -> T:
    """Run a Redis step on the loop, waiting out a short outage (LOOP_OUTAGE), then re-raise."""
    return await retry_async(step, replace(LOOP_OUTAGE, attempts=attempts))
