"""The Redis transport: commands in bulk, packed with hiredis, replies read as Redis sent them.

Both ways tripline talks to Redis in bulk are here:

* `execute()` runs the commands queued on a redis-py Pipeline (of the synchronous client) in
  one round trip: the doors' accept batches, the shards' decisions, the resume sweep.
* `AutoPipeline`, on an asyncio loop (the dialer's and the enricher's), coalesces what the
  loop's tasks issue meanwhile into pipelined round trips, one batch on its own connection at
  a time, like ioredis' auto-pipelining: a busier loop makes bigger batches, not more trips.

Both pack with hiredis (`pack`) and read every reply of a batch as Redis sent it (ints, bytes,
lists, None; errors too, so the stream stays in step); both load a Lua script again when Redis
lost its script cache (NOSCRIPT, after a restart) and send again only the calls that did not
run; both let a caller tell an error about one command's own keys (`item_error`) from Redis
failing as a whole. They use redis-py's Connection API (send_packed_command, read_response)
rather than its Pipeline execution, whose per-command bookkeeping and response callbacks were
the larger part of the accept, shard and dialer-loop stages in profiles; and redis-py's Script
asks SCRIPT EXISTS before each pipeline, a round trip per batch on the hot path.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
from typing import Any

import hiredis
import redis
import redis.asyncio as aioredis
from redis._parsers import hiredis as _redis_hiredis

_RELOADS = 3
"""How often a script Redis lost (NOSCRIPT: a restart, a SCRIPT FLUSH) is loaded and run again
before its NoScriptError stands: a failover or repeated flushes may lose it in between."""

# What redis-py's hiredis parser has its reader answer while a reply is incomplete (older
# versions: False, hiredis' own default).
_NOT_ENOUGH_DATA = getattr(_redis_hiredis, "NOT_ENOUGH_DATA", False)


def pack(commands: list[tuple[Any, ...]]) -> bytes:
    """The commands as one buffer of RESP, packed in C."""
    return b"".join([hiredis.pack_command(command) for command in commands])


def script_sha(source: str) -> str:
    """The SHA1 Redis knows a Lua script by (EVALSHA)."""
    return hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()


class PipelinedScript:
    """A Lua script queued into pipelines as a bare EVALSHA.

    redis-py's Script object makes every pipeline ask SCRIPT EXISTS first: one extra round trip
    per batch on the hot path. We load once and, if Redis lost its script cache (a restart),
    load again and re-send the calls that did not run (execute()).
    """

    def __init__(self, client: redis.Redis, source: str) -> None:
        """Load the script now (fails fast if Redis is not there)."""
        self._client, self._source = client, source
        self.sha = str(client.script_load(source))

    def queue(self, pipe: redis.client.Pipeline, keys: list[str], args: list[Any]) -> None:
        """Add one call of the script to `pipe`."""
        pipe.evalsha(self.sha, len(keys), *keys, *args)

    def reload(self) -> None:
        """Load the script again (after Redis lost its cache)."""
        self.sha = str(self._client.script_load(self._source))


# Error replies about Redis as a whole, not about one command's keys: every command fails alike.
_SERVER_STATES = ("MISCONF", "BUSY", "NOREPLICAS", "MASTERDOWN", "CLUSTERDOWN", "LOADING", "OOM")


def item_error(reply: Any) -> bool:  # noqa: ANN401
    """Whether a reply is an error about its own command's keys or arguments.

    WRONGTYPE, a script's runtime error, a bad argument: another alert's commands in the same
    pipeline are not concerned. redis-py gives the server-wide errors (OOM, READONLY, LOADING,
    NOSCRIPT, cluster redirections...) classes of their own; what is left as a plain
    ResponseError is about the command, bar the few states listed in _SERVER_STATES.
    """
    return type(reply) is redis.ResponseError and not str(reply).startswith(_SERVER_STATES)


def execute(
    pipe: redis.client.Pipeline, *scripts: PipelinedScript, item_errors: bool = False
) -> list[Any]:
    """Run the commands queued on `pipe` in one round trip; the replies come unparsed.

    Replies are Redis' own: integers, bytes, lists, None (`SET NX` answers b'OK' or None). We
    pack with hiredis and read the replies ourselves: redis-py's per-command bookkeeping and
    response callbacks are a large part of the accept and shard stages in a profile. On
    NOSCRIPT (Redis lost its script cache) `scripts` are loaded again and the script calls that
    did not run are sent again, nothing else. Any other error reply raises, as redis-py's
    pipelines do — unless `item_errors`: then an error about one command's own keys (see
    item_error) is left in its place for the caller to pin on the alert it belongs to. A
    connection failure raises redis' ConnectionError / TimeoutError. `pipe` keeps its
    commands: a retry sends them again.
    """
    commands = [args for args, _ in pipe.command_stack]  # kept: a retry sends them again
    if not commands:
        return []
    pool = pipe.connection_pool
    replies = _round_trip(pool, commands)
    for _ in range(_RELOADS):  # a flush may come again between a reload and the run
        lost = [n for n, r in enumerate(replies) if isinstance(r, redis.exceptions.NoScriptError)]
        if not lost:
            break
        for script in scripts:  # those scripts did not run: load them, run just those again
            script.reload()
        again = _round_trip(pool, [commands[n] for n in lost])
        for n, reply in zip(lost, again, strict=True):
            replies[n] = reply
    for reply in replies:
        if isinstance(reply, redis.ResponseError) and not (item_errors and item_error(reply)):
            raise reply
    return replies


def _round_trip(pool: redis.ConnectionPool, commands: list[tuple[Any, ...]]) -> list[Any]:
    conn = pool.get_connection()
    try:
        conn.send_packed_command([pack(commands)])  # type: ignore[no-untyped-call]
        parser = getattr(conn, "_parser", None)
        replies: list[Any] = []
        if isinstance(getattr(parser, "_reader", None), hiredis.Reader):
            # Straight from the parser's hiredis reader: redis-py's read_response costs more
            # than the parsing per reply (README "Performance"). Error replies come back as
            # redis-py's exception objects (its parser's replyError), in their places.
            return _read_sync(parser, len(commands))
        for _ in commands:  # every reply is read, errors too: the stream stays in step
            try:
                replies.append(conn.read_response())
            except redis.ResponseError as exc:
                replies.append(exc)
    except BaseException:
        conn.disconnect()  # type: ignore[no-untyped-call]  # replies may be left unread
        raise
    finally:
        pool.release(conn)
    return replies


def _read_sync(parser: Any, count: int) -> list[Any]:  # noqa: ANN401 - redis-py's parser
    """`count` replies read with the parser's own hiredis reader and socket (see _round_trip)."""
    reader: hiredis.Reader = parser._reader  # noqa: SLF001
    replies: list[Any] = []
    while not _parsed(reader, replies, count):
        try:
            parser.read_from_socket()
        except OSError as exc:  # a reset: redis-py's read_response says ConnectionError
            raise _reset(exc) from exc
    return replies


def _parsed(reader: hiredis.Reader, replies: list[Any], count: int) -> bool:
    """Take what the reader holds into `replies`, up to `count`; whether that many are in."""
    while len(replies) < count:
        reply = reader.gets()
        if reply is False or reply is _NOT_ENOUGH_DATA:
            return False
        if isinstance(reply, redis.ConnectionError):
            raise reply  # LOADING and the like: as read_response raises them
        replies.append(reply)
    return True


def _reset(exc: OSError) -> redis.ConnectionError:
    return redis.ConnectionError(f"Error while reading from Redis: {exc!r}")


def async_redis(
    url: str, *, connections: int = 32, socket_timeout: float | None = None
) -> aioredis.Redis:
    """An asyncio Redis client whose pool waits for a free connection instead of failing.

    A storm puts thousands of coroutines on one loop; a plain pool refuses the excess with
    MaxConnectionsError. A blocking pool queues them behind a bounded set of connections.
    `socket_timeout`: how long a reply may take (an AutoPipeline's batch deadline); None waits.
    """
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=connections, timeout=None, socket_timeout=socket_timeout
    )
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
        sha = script_sha(source)
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
                answer = await self._reload_and_run(command)
            if future.done():
                continue
            if isinstance(answer, Exception):
                future.set_exception(answer)
            else:
                future.set_result(answer)

    async def _reload_and_run(self, command: tuple[Any, ...]) -> Any:  # noqa: ANN401
        """A script call Redis lost the script of: loaded again and run; its reply or error."""
        answer: Any = None
        for _ in range(_RELOADS):  # a flush may come again between the load and the run
            try:
                await self._client.script_load(self._sources[command[1]])
                answer = await self._client.execute_command(*command)  # type: ignore[no-untyped-call]
            except Exception as exc:
                answer = exc
            if not isinstance(answer, redis.exceptions.NoScriptError):
                break
        return answer

    async def _round_trip(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        if self._conn is None:
            self._conn = self._client.connection_pool.make_connection()  # type: ignore[no-untyped-call]
        conn = self._conn
        try:
            # hiredis packs in C what redis-py's async connection packs argument by argument.
            await conn.send_packed_command(pack(commands), check_health=False)
            self.round_trips += 1
            # One deadline for the batch, not a timer per reply.
            async with asyncio.timeout(getattr(conn, "socket_timeout", None)):
                replies = await _read_replies(conn, len(commands))
        except TimeoutError as exc:
            await conn.disconnect()
            raise redis.TimeoutError(f"no reply from Redis for {len(commands)} commands") from exc
        except BaseException:
            # Replies may be left unread: the next batch starts on a fresh connection.
            await conn.disconnect()
            raise
        return replies


async def _read_replies(conn: aioredis.connection.AbstractConnection, count: int) -> list[Any]:
    """`count` replies, errors in their places; straight from hiredis when the parser has it.

    redis-py's read_response costs several times the parsing per reply (a timeout context, the
    peer's name formatted, awaits within awaits): the dialer loop's larger cost in a profile.
    """
    parser = getattr(conn, "_parser", None)
    reader = getattr(parser, "_reader", None)
    replies: list[Any] = []
    if not isinstance(reader, hiredis.Reader):
        for _ in range(count):  # every reply is read, errors too: the stream stays in step
            try:
                replies.append(await conn.read_response(timeout=math.inf))
            except redis.ResponseError as exc:
                replies.append(exc)
        return replies
    while not _parsed(reader, replies, count):
        try:
            await parser.read_from_socket()  # type: ignore[union-attr]
        except OSError as exc:  # a reset: redis-py's read_response says ConnectionError
            raise _reset(exc) from exc
    return replies
