"""AutoPipeline: concurrent commands share round trips; errors, NOSCRIPT and outages handled."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from tests.conftest import REDIS_URL
from tripline.actors._loop import AutoPipeline

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
