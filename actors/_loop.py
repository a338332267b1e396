"""An asyncio loop on a thread of its own, for actors that do HTTP with aiohttp."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import threading
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Future
from dataclasses import replace
from typing import Any, TypeVar

import hiredis
import redis
import redis.asyncio as aioredis

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


def async_redis(url: str, *, connections: int = 32) -> aioredis.Redis:
    """An asyncio Redis client whose pool waits for a free connection instead of failing.

    A storm puts thousands of coroutines on one loop; a plain pool refuses the excess with
    MaxConnectionsError. A blocking pool queues them behind a bounded set of connections.
    """
    pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=connections, timeout=None)
    return aioredis.Redis(connection_pool=pool)


class AutoPipeline:
    """Coalesces the Redis commands that a loop's tasks issue into pipelined round trips.

    Like ioredis' auto-pipelining: each call path keeps its plain sequential awaits, and the
    dozens of calls in flight share their round trips. One connection of its own, one batch on
    it at a time: what is issued while a batch is out goes together in the next one, so a busier
    loop makes bigger batches instead of more round trips. It packs and reads the replies itself
    (redis-py's Connection API) rather than through a Pipeline object, whose per-command
    bookkeeping is the larger part of the dialer loop's time in a profile. A connection failure
    fails every command of the batch (callers ride it out and retry); NOSCRIPT after a Redis
    restart reloads the script and retries that one command.
    """

    def __init__(self, client: aioredis.Redis) -> None:
        """Send through a connection made like `client`'s; register scripts with script()."""
        self._client = client
        self._queued: list[tuple[tuple[Any, ...], asyncio.Future[Any]]] = []
        self._sources: dict[str, str] = {}
        self._sending: asyncio.Task[None] | None = None
        self._conn: aioredis.connection.AbstractConnection | None = None
        self.round_trips = 0
        """Batches sent so far."""

    def script(self, source: str) -> str:
        """Register a Lua script; returns its SHA1 for evalsha()."""
        sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()
        self._sources[sha] = source
        return sha

    async def evalsha(self, sha: str, keys: list[str], args: list[Any]) -> Any:  # noqa: ANN401
        """Run a registered script in the next batch."""
        return await self.execute("EVALSHA", sha, len(keys), *keys, *args)

    async def execute(self, *command: Any) -> Any:  # noqa: ANN401
        """Queue one command for the next batch and wait for its reply (unparsed: ints, bytes)."""
        return await self.send(*command)

    def send(self, *command: Any) -> asyncio.Future[Any]:  # noqa: ANN401
        """Queue one command for the next batch; its reply is the future's result.

        For a batch of commands awaited together (asyncio.gather over futures makes no task
        per command, as it would over coroutines).
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queued.append((command, future))
        if len(self._queued) == 1 and self._sending is None:
            loop.call_soon(self._flush)
        return future

    def send_script(self, sha: str, keys: list[str], args: list[Any]) -> asyncio.Future[Any]:
        """A registered script in the next batch, as send() does a command."""
        return self.send("EVALSHA", sha, len(keys), *keys, *args)

    async def aclose(self) -> None:
        """Wait for the batch in flight, then close the connection."""
        if self._sending is not None:
            with contextlib.suppress(Exception):
                await self._sending
        if self._conn is not None:
            await self._conn.disconnect()
            self._conn = None

    def _flush(self) -> None:
        if self._sending is not None or not self._queued:
            return  # the batch in flight flushes what queued meanwhile when it is done
        batch, self._queued = self._queued, []
        self._sending = asyncio.get_running_loop().create_task(self._send(batch))
        self._sending.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._sending = None
        if not task.cancelled():  # cancelled: the loop is stopping, start nothing new
            self._flush()

    async def _send(self, batch: list[tuple[tuple[Any, ...], asyncio.Future[Any]]]) -> None:
        try:
            replies = await self._round_trip([command for command, _ in batch])
        except BaseException as exc:  # the connection failed: every command of it failed
            error = exc if isinstance(exc, Exception) else redis.ConnectionError(repr(exc))
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            if not isinstance(exc, Exception):
                raise
            return
        for (command, future), reply in zip(batch, replies, strict=True):
            answer = reply
            if isinstance(reply, redis.exceptions.NoScriptError) and command[0] == "EVALSHA":
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

    async def _round_trip(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        if self._conn is None:
            self._conn = self._client.connection_pool.make_connection()  # type: ignore[no-untyped-call]
        conn = self._conn
        try:
            # hiredis packs in C what redis-py's async connection packs argument by argument.
            packed = b"".join([hiredis.pack_command(command) for command in commands])
            await conn.send_packed_command(packed, check_health=False)
            self.round_trips += 1
            replies: list[Any] = []
            # One deadline for the batch, not a timer per reply.
            async with asyncio.timeout(getattr(conn, "socket_timeout", None)):
                for _ in commands:  # every reply is read, errors too: the stream stays in step
                    try:
                        replies.append(await conn.read_response(timeout=math.inf))
                    except redis.ResponseError as exc:
                        replies.append(exc)
        except TimeoutError as exc:
            await conn.disconnect()
            raise redis.TimeoutError(f"no reply from Redis for {len(commands)} commands") from exc
        except BaseException:
            # Replies may be left unread: the next batch starts on a fresh connection.
            await conn.disconnect()
            raise
        return replies
