"""An asyncio loop on a thread of its own, for actors that do HTTP with aiohttp."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

import redis
import redis.asyncio as aioredis

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


_OUTAGE = (redis.ConnectionError, redis.TimeoutError)


async def ride_out(step: Callable[[], Awaitable[T]], *, attempts: int = 12) -> T:
    """Run a Redis step, waiting out a short outage (~60 s of backoff), then re-raise."""
    for attempt in range(attempts):
        try:
            return await step()
        except _OUTAGE:
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(min(0.1 * 2**attempt, 8.0))
    raise AssertionError("unreachable")  # pragma: no cover


def async_redis(url: str, *, connections: int = 32) -> aioredis.Redis:
    """An asyncio Redis client whose pool waits for a free connection instead of failing.

    A storm puts thousands of coroutines on one loop; a plain pool refuses the excess with
    MaxConnectionsError. A blocking pool queues them behind a bounded set of connections.
    """
    pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=connections, timeout=None)
    return aioredis.Redis(connection_pool=pool)


class AutoPipeline:
    """Coalesces the Redis commands that a loop's tasks issue in one iteration into one pipeline.

    Like ioredis' auto-pipelining: each call path keeps its plain sequential awaits, and the
    dozens of calls in flight share their round trips (and redis-py's per-command overhead).
    A connection failure fails every command of the batch (callers ride it out and retry);
    NOSCRIPT after a Redis restart reloads the script and retries that one command.
    """

    def __init__(self, client: aioredis.Redis) -> None:
        """Send through `client`; register scripts with script()."""
        self._client = client
        self._queued: list[tuple[tuple[Any, ...], asyncio.Future[Any]]] = []
        self._sources: dict[str, str] = {}
        self._sending: set[asyncio.Task[None]] = set()

    def script(self, source: str) -> str:
        """Register a Lua script; returns its SHA1 for evalsha()."""
        sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()
        self._sources[sha] = source
        return sha

    async def evalsha(self, sha: str, keys: list[str], args: list[Any]) -> Any:  # noqa: ANN401
        """Run a registered script in the next batch."""
        return await self.execute("EVALSHA", sha, len(keys), *keys, *args)

    async def execute(self, *command: Any) -> Any:  # noqa: ANN401
        """Queue one command for this iteration's batch and wait for its reply."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queued.append((command, future))
        if len(self._queued) == 1:
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        batch, self._queued = self._queued, []
        task = asyncio.get_running_loop().create_task(self._send(batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[tuple[tuple[Any, ...], asyncio.Future[Any]]]) -> None:
        pipe = self._client.pipeline(transaction=False)
        for command, _ in batch:
            pipe.execute_command(*command)
        try:
            results = await pipe.execute(raise_on_error=False)
        except Exception as exc:  # the connection failed: every command of it failed
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (command, future), result in zip(batch, results, strict=True):
            answer = result
            if isinstance(result, redis.exceptions.NoScriptError) and command[0] == "EVALSHA":
                try:
                    await self._client.script_load(self._sources[command[1]])
                    answer = await self._client.execute_command(*command)  # type: ignore[no-untyped-call]
                except Exception as exc:
                    answer = exc
            if future.done():
                continue
            if isinstance(answer, Exception):
                future.set_exception(answer)
            else:
                future.set_result(answer)
