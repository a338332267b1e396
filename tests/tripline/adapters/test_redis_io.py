"""The Redis transport: execute() and AutoPipeline share round trips and read every reply; errors,
NOSCRIPT after a restart and outages handled."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import hiredis
import pytest
import redis
import redis.asyncio as aioredis

from tests.conftest import REDIS_URL
from tripline.adapters import redis_io
from tripline.adapters.redis_io import (
    AutoPipeline,
    PipelinedScript,
    execute,
    item_error,
    lane,
    replies,
    script_sha,
    settled,
    urgently,
)

ECHO_LUA = "return {KEYS[1], ARGV[1]}"


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@contextlib.asynccontextmanager
async def pipeline_and_key() -> AsyncIterator[tuple[aioredis.Redis, AutoPipeline, str]]:
    """A client, its AutoPipeline and a fresh key; all closed and deleted afterwards."""
    client = aioredis.Redis.from_url(REDIS_URL)
    auto = AutoPipeline(client)
    key = f"t-auto-{uuid.uuid4().hex}"
    try:
        yield client, auto, key
    finally:
        await client.delete(key)
        await auto.aclose()
        await client.aclose()


def test_commands_issued_together_share_one_round_trip() -> None:
    async def go() -> tuple[list[Any], int]:
        async with pipeline_and_key() as (client, auto, key):
            sha = auto.script(ECHO_LUA)
            await client.script_load(ECHO_LUA)
            replies = await asyncio.gather(
                *(auto.execute("SADD", key, str(n)) for n in range(50)),
                auto.execute("SCARD", key),
                auto.evalsha(sha, [key], ["x"]),
            )
        return replies, auto.round_trips

    replies, round_trips = run(go())
    assert replies[:50] == [1] * 50
    assert replies[50] == 50  # in order: after every SADD of the same batch
    assert replies[51][1] == b"x"
    assert round_trips == 1


def test_what_is_issued_while_a_batch_is_out_goes_together_in_the_next() -> None:
    async def go() -> tuple[list[Any], int]:
        async with pipeline_and_key() as (_, auto, key):
            first = asyncio.ensure_future(auto.execute("INCR", key))
            await asyncio.sleep(0)  # the first batch (one INCR) leaves
            later = [auto.execute("INCR", key) for _ in range(20)]
            replies = await asyncio.gather(first, *later)
        return replies, auto.round_trips

    replies, round_trips = run(go())
    assert replies == list(range(1, 22))
    assert round_trips == 2


def test_urgent_work_does_not_wait_behind_the_batch_in_flight_nor_what_queued_behind_it() -> None:
    """A critical alert's commands take a lane of their own: answered before a storm's bulk."""

    async def go() -> tuple[list[str], int, int]:
        async with pipeline_and_key() as (_, auto, key):
            done: list[str] = []
            gate = f"{key}:gate"
            # A batch in flight that Redis holds (its first command blocks the bulk connection
            # until the gate opens: a slow batch at any machine's speed), 20,000 queued behind.
            bulk = [auto.send("BLPOP", gate, 10)]
            bulk += [auto.send("INCR", key) for _ in range(20_000)]
            await asyncio.sleep(0)  # that batch leaves
            bulk += [auto.send("INCR", key) for _ in range(20_000)]
            for future in (bulk[0], bulk[-1]):
                future.add_done_callback(lambda _f: done.append("bulk"))

            async def critical() -> Any:
                reply = await auto.execute("GET", key)
                done.append("urgent")
                return reply

            seen = await urgently(critical())
            await urgently(auto.execute("LPUSH", gate, "open"))
            await asyncio.gather(*bulk)
            with lane(urgent=True):
                pushed = auto.send("INCR", key)  # a step sent from a block, not a task
            with lane(urgent=False):
                normal = auto.send("INCR", key)
            await asyncio.gather(pushed, normal)
            return done, int(seen or 0), auto.round_trips

    done, seen, round_trips = run(go())
    assert done == ["urgent", "bulk", "bulk"]
    assert seen == 0  # it ran in Redis while the bulk was held
    # The bulk's two batches and the last normal INCR; the urgent lane's trips are its own.
    assert round_trips == 3


def test_the_urgent_lane_reloads_a_lost_script_too() -> None:
    async def go() -> Any:
        async with pipeline_and_key() as (client, auto, key):
            sha = auto.script(ECHO_LUA)
            await client.script_flush()
            return await urgently(auto.evalsha(sha, [key], ["u"]))

    assert run(go())[1] == b"u"


def test_an_error_reply_fails_its_own_command_only() -> None:
    async def go() -> list[Any]:
        async with pipeline_and_key() as (_, auto, key):
            return list(
                await asyncio.gather(
                    auto.execute("SET", key, "text"),
                    auto.execute("INCR", key),  # not an integer: an error reply
                    auto.execute("GET", key),
                    return_exceptions=True,
                )
            )

    ok, failed, value = run(go())
    assert ok == b"OK"
    assert isinstance(failed, redis.ResponseError)
    assert value == b"text"


def test_a_script_missing_after_a_redis_restart_is_loaded_and_run() -> None:
    async def go() -> Any:
        client = aioredis.Redis.from_url(REDIS_URL)
        auto = AutoPipeline(client)
        source = f"return '{uuid.uuid4().hex}'"  # a script Redis has never seen
        try:
            return source, await auto.evalsha(auto.script(source), ["k"], [])
        finally:
            await auto.aclose()
            await client.aclose()

    source, reply = run(go())
    assert reply.decode() in source


def test_an_unreachable_redis_fails_every_command_of_the_batch() -> None:
    async def go() -> None:
        client = aioredis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
        auto = AutoPipeline(client)
        try:
            await asyncio.gather(auto.execute("PING"), auto.execute("PING"))
        finally:
            await auto.aclose()
            await client.aclose()

    with pytest.raises(redis.ConnectionError):
        run(go())


# --- execute(): a synchronous pipeline in one round trip ----------------------------------


def test_execute_answers_raw_replies_in_order_and_survives_a_lost_script_cache(
    redis_client: redis.Redis, prefix: str
) -> None:
    script = PipelinedScript(redis_client, "return tonumber(ARGV[1]) + 1")
    pipe = redis_client.pipeline(transaction=False)
    pipe.set(f"{prefix}:a", b"x", nx=True, ex=60)
    pipe.set(f"{prefix}:a", b"y", nx=True, ex=60)
    script.queue(pipe, [f"{prefix}:a"], [41])
    pipe.hmget(f"{prefix}:missing", ["f", "g"])
    redis_client.script_flush()  # as after a Redis restart
    assert execute(pipe, script) == [b"OK", None, 42, [None, None]]
    # The pipe keeps its commands, so a retry after a failure sends them again.
    assert execute(pipe, script) == [None, None, 42, [None, None]]


def test_execute_raises_an_error_reply(redis_client: redis.Redis, prefix: str) -> None:
    redis_client.set(f"{prefix}:s", "text")
    pipe = redis_client.pipeline(transaction=False)
    pipe.incr(f"{prefix}:s")
    pipe.set(f"{prefix}:t", "1")
    with pytest.raises(redis.ResponseError):
        execute(pipe)
    assert redis_client.get(f"{prefix}:t") == b"1"  # the commands around it ran
    assert redis_client.ping()  # and the connection pool is still usable


def test_an_error_about_one_commands_keys_stays_in_its_place_when_asked(
    redis_client: redis.Redis, prefix: str
) -> None:
    redis_client.rpush(f"{prefix}:list", "x")
    pipe = redis_client.pipeline(transaction=False)
    pipe.set(f"{prefix}:ok", "1")
    pipe.get(f"{prefix}:list")  # WRONGTYPE: about this command's key
    pipe.get(f"{prefix}:ok")
    first, wrong, last = execute(pipe, item_errors=True)
    assert (first, last) == (b"OK", b"1")
    assert isinstance(wrong, redis.ResponseError)
    assert item_error(wrong)


@pytest.mark.parametrize(
    ("reply", "about_the_command"),
    [
        (redis.ResponseError("WRONGTYPE Operation against a key"), True),
        (redis.ResponseError("ERR Error running script"), True),
        (redis.ResponseError("MISCONF Redis is configured to save RDB snapshots"), False),
        (redis.ResponseError("BUSY Redis is busy running a script"), False),
        (redis.exceptions.OutOfMemoryError("command not allowed when used memory"), False),
        (redis.exceptions.ReadOnlyError("You can't write against a read only replica"), False),
        (redis.exceptions.NoScriptError("No matching script"), False),
        (b"OK", False),
        (None, False),
    ],
)
def test_item_error_tells_a_commands_own_error_from_redis_failing_as_a_whole(
    reply: object, about_the_command: bool
) -> None:
    assert item_error(reply) is about_the_command


def test_replies_larger_than_a_socket_read_arrive_whole_on_both_paths(
    redis_client: redis.Redis, prefix: str
) -> None:
    """Replies are read straight from hiredis: one spanning many reads, errors in place."""
    big = bytes(range(256)) * 4096  # 1 MiB: many socket reads
    key, text = f"{prefix}:big", f"{prefix}:text"
    commands: list[tuple[Any, ...]] = [
        ("SET", key, big),
        ("GET", key),
        ("SET", text, "x"),
        ("LPUSH", text, "y"),  # WRONGTYPE, in its place
        ("GET", f"{prefix}:none"),
        ("EVAL", "return {1, 'a', {2}}", 0),
        ("STRLEN", key),
    ]
    pipe = redis_client.pipeline(transaction=False)
    for command in commands:
        pipe.execute_command(*command)  # type: ignore[no-untyped-call]
    expected = [b"OK", big, b"OK", redis.ResponseError, None, [1, b"a", [2]], len(big)]

    def same(replies: list[Any]) -> None:
        assert len(replies) == len(expected)
        for reply, want in zip(replies, expected, strict=True):
            if want is redis.ResponseError:
                assert isinstance(reply, redis.ResponseError)
                assert "WRONGTYPE" in str(reply)
            else:
                assert reply == want

    same(execute(pipe, item_errors=True))

    async def auto() -> list[Any]:
        client = aioredis.Redis.from_url(REDIS_URL)
        pipeline = AutoPipeline(client)
        try:
            return list(
                await asyncio.gather(*(pipeline.send(*c) for c in commands), return_exceptions=True)
            )
        finally:
            await pipeline.aclose()
            await client.aclose()

    same(run(auto()))
    assert redis_client.get(key) == big  # the connection stayed in step: a next command works


def test_a_connection_reset_mid_reply_is_a_redis_connection_error_on_both_paths(
    redis_client: redis.Redis, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As redis-py's read_response says it: callers ride out Redis errors, not a bare OSError
    (a reset webhook request was a 500 and its key not remembered as uncertain)."""
    from redis._parsers import hiredis as parsers  # noqa: PLC0415

    redis_client.set(f"{prefix}:k", "v")

    def reset(*_args: Any, **_kwargs: Any) -> Any:
        raise ConnectionResetError(104, "Connection reset by peer")

    async def reset_async(*_args: Any, **_kwargs: Any) -> Any:
        raise ConnectionResetError(104, "Connection reset by peer")

    pipe = redis_client.pipeline(transaction=False)
    pipe.execute_command("GET", f"{prefix}:k")  # type: ignore[no-untyped-call]
    assert execute(pipe) == [b"v"]  # connected: the handshake is behind us
    monkeypatch.setattr(parsers._HiredisParser, "read_from_socket", reset)
    with pytest.raises(redis.ConnectionError):
        execute(pipe)

    async def auto() -> Any:
        client = aioredis.Redis.from_url(REDIS_URL)
        pipeline = AutoPipeline(client)
        try:
            assert await pipeline.send("GET", f"{prefix}:k") == b"v"
            monkeypatch.setattr(parsers._AsyncHiredisParser, "read_from_socket", reset_async)
            return await pipeline.send("GET", f"{prefix}:k")
        finally:
            await pipeline.aclose()
            await client.aclose()

    with pytest.raises(redis.ConnectionError):
        run(auto())


def test_a_script_lost_again_while_it_is_loaded_is_loaded_and_run_again(
    redis_client: redis.Redis,
) -> None:
    """A failover or repeated SCRIPT FLUSH between the load and the run: NOSCRIPT twice in a
    row still runs the script (once, it quarantined an alert as its own failure)."""
    marker = uuid.uuid4().hex
    source = f"return '{marker}'"  # never loaded by anyone else: its SHA is unknown to Redis

    class LostOnce(PipelinedScript):
        def __init__(self) -> None:  # not loaded at start: as after a restart
            self._client, self._source, self.sha = redis_client, source, script_sha(source)
            self.reloads = 0

        def reload(self) -> None:
            self.reloads += 1
            if self.reloads > 1:  # the first load is "lost" again before the run
                super().reload()

    script = LostOnce()
    pipe = redis_client.pipeline(transaction=False)
    script.queue(pipe, [], [])
    assert execute(pipe, script) == [marker.encode()]
    assert script.reloads == 2

    async def auto() -> Any:
        client = aioredis.Redis.from_url(REDIS_URL)
        pipeline = AutoPipeline(client)
        sha = pipeline.script(f"return '{marker}-async'")
        loads = [0]
        real = client.script_load

        async def lost_once(text: str) -> Any:
            loads[0] += 1
            return None if loads[0] == 1 else await real(text)

        client.script_load = lost_once  # type: ignore[method-assign,assignment]
        try:
            return await pipeline.evalsha(sha, [], []), loads[0]
        finally:
            await pipeline.aclose()
            await client.aclose()

    assert run(auto()) == (f"{marker}-async".encode(), 2)


# --- settled / replies: a batch's futures read in order ---------------------------------------


def _resolved_soon(values: list[Any]) -> list[asyncio.Future[Any]]:
    """Futures resolved together on the next loop iteration, as one AutoPipeline batch's are."""
    loop = asyncio.get_running_loop()
    futures: list[asyncio.Future[Any]] = [loop.create_future() for _ in values]

    def resolve() -> None:
        for future, value in zip(futures, values, strict=True):
            if isinstance(value, BaseException):
                future.set_exception(value)
            else:
                future.set_result(value)

    loop.call_soon(resolve)
    return futures


@pytest.mark.parametrize(
    "values",
    [
        [],
        [1],
        [b"a", None, 3],
        [redis.ResponseError("WRONGTYPE"), 2, redis.ConnectionError("gone")],
    ],
)
def test_settled_answers_what_gather_with_exceptions_answers(values: list[Any]) -> None:
    async def both() -> tuple[list[Any], list[Any]]:
        ours = await settled(_resolved_soon(values))
        theirs = await asyncio.gather(*_resolved_soon(values), return_exceptions=True)
        return ours, list(theirs)

    ours, theirs = asyncio.run(both())
    assert ours == theirs == values


def test_replies_raise_the_first_failure_in_order_and_read_every_one() -> None:
    first, second = redis.ResponseError("first"), redis.ConnectionError("second")

    async def go() -> list[asyncio.Future[Any]]:
        futures = _resolved_soon([1, first, 2, second])
        with pytest.raises(redis.ResponseError, match="first"):
            await replies(futures)
        assert await replies(_resolved_soon([1, 2])) == [1, 2]
        return futures

    futures = asyncio.run(go())
    # Each failure was read: none would be logged as "never retrieved".
    assert all(f._log_traceback is False for f in futures)


def test_a_cancelled_wait_leaves_no_failure_unread() -> None:
    async def go() -> list[asyncio.Future[Any]]:
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[Any]] = [loop.create_future() for _ in range(3)]
        waiting = asyncio.ensure_future(settled(futures))
        await asyncio.sleep(0)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        futures[1].set_exception(redis.ConnectionError("after"))
        futures[2].set_result(3)
        await asyncio.sleep(0)  # the done callbacks run
        return futures

    futures = asyncio.run(go())
    assert futures[0].cancelled()  # the one awaited went with the wait, as under gather
    assert futures[1]._log_traceback is False


def test_a_round_trip_starts_one_task_only() -> None:
    """The batch's own task; no wait_for task and timer around its write (3.11's wait_for)."""

    async def go() -> list[str]:
        loop = asyncio.get_running_loop()
        started: list[str] = []

        def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
            started.append(getattr(coro, "__qualname__", repr(coro)))
            return asyncio.Task(coro, loop=loop, **kwargs)

        async with pipeline_and_key() as (_client, auto, key):
            await auto.execute("SET", key, "1")  # connected: what follows is one round trip
            loop.set_task_factory(factory)
            try:
                assert await auto.execute("GET", key) == b"1"
            finally:
                loop.set_task_factory(None)
        return started

    assert run(go()) == ["AutoPipeline._send"]


class _Conn:
    """What _write reads of a redis-py connection: its stream writer and socket timeout."""

    def __init__(self, writer: asyncio.StreamWriter | None, socket_timeout: float) -> None:
        self._writer = writer
        self.socket_timeout = socket_timeout


def conn(writer: asyncio.StreamWriter | None, socket_timeout: float) -> Any:
    """A stand-in for redis-py's connection, as _write reads it."""
    return _Conn(writer, socket_timeout)


class _UnreadPeer:
    """A connection to a server that never reads from it; `close` ends both ends."""

    async def open(self) -> asyncio.StreamWriter:
        self.held: list[asyncio.StreamWriter] = []
        self.accepted = asyncio.Event()

        async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.held.append(writer)
            self.accepted.set()

        self.server = await asyncio.start_server(hold, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        _reader, self.writer = await asyncio.open_connection("127.0.0.1", port)
        await self.accepted.wait()
        return self.writer

    async def close(self) -> None:
        self.writer.transport.abort()
        for writer in self.held:
            writer.transport.abort()
        self.server.close()
        await self.server.wait_closed()
        await asyncio.sleep(0)  # the aborted transports close their sockets on the next turn


def test_a_write_the_peer_does_not_take_times_out_within_the_socket_timeout() -> None:
    async def go() -> float:
        peer = _UnreadPeer()
        writer = await peer.open()
        started = asyncio.get_running_loop().time()
        try:
            with pytest.raises(TimeoutError):  # _exchange says redis.TimeoutError and disconnects
                await redis_io._write(conn(writer, 0.3), b"x" * 64_000_000)
            # Aborted, its unsent bytes dropped: a disconnect that waited for them to drain
            # would hold the caller another socket timeout.
            assert writer.transport.is_closing()
            assert writer.transport.get_write_buffer_size() == 0
            return asyncio.get_running_loop().time() - started
        finally:
            await peer.close()

    assert 0.25 <= run(go()) < 5


def test_a_write_on_a_closed_connection_is_a_redis_connection_error() -> None:
    async def go() -> None:
        peer = _UnreadPeer()
        writer = await peer.open()
        writer.close()
        try:
            with pytest.raises(redis.ConnectionError, match="closed"):
                await redis_io._write(conn(writer, 1.0), b"PING")
            with pytest.raises(redis.ConnectionError, match="closed"):
                await redis_io._write(conn(None, 1.0), b"PING")
        finally:
            await peer.close()

    run(go())


def test_a_reset_while_the_rest_waits_for_room_is_a_redis_connection_error() -> None:
    async def go() -> None:
        peer = _UnreadPeer()
        writer = await peer.open()

        async def reset() -> None:
            await asyncio.sleep(0.2)
            peer.held[0].transport.abort()  # an RST: the peer went away mid-write

        resetting = asyncio.ensure_future(reset())
        try:
            with pytest.raises(redis.ConnectionError, match="writing"):
                await redis_io._write(conn(writer, 10.0), b"x" * 64_000_000)
        finally:
            await resetting
            await peer.close()

    run(go())


def test_a_batch_redis_stops_reading_fails_within_one_socket_timeout() -> None:
    """Through _exchange, with redis-py's own connection: the write times out, the connection
    is dropped at once (a close that waited for the unsent bytes took another 5 s)."""

    async def go() -> float:
        reading = asyncio.Event()
        reading.set()

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            parse = hiredis.Reader()
            try:
                while reading.is_set():  # the handshake's commands, each answered +OK
                    parse.feed(await reader.read(65536))
                    while parse.gets() is not False:
                        writer.write(b"+OK\r\n")
                await asyncio.sleep(30)  # then reads nothing more
            finally:
                writer.transport.abort()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        connection = aioredis.Connection(
            host="127.0.0.1", port=port, socket_timeout=0.5, socket_connect_timeout=5.0, protocol=2
        )
        try:
            await connection.connect()  # type: ignore[no-untyped-call]
            reading.clear()
            started = asyncio.get_running_loop().time()
            with pytest.raises(redis.TimeoutError):
                await redis_io._exchange(connection, [("SET", "k", b"x" * 64_000_000)])
            return asyncio.get_running_loop().time() - started
        finally:
            await connection.disconnect()
            server.close()
            await server.wait_closed()

    assert run(go()) < 2.0
