"""AutoPipeline: concurrent commands share one round trip; NOSCRIPT and outages are handled."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from actors._loop import AutoPipeline
from tests.conftest import REDIS_URL

ECHO_LUA = "return {KEYS[1], ARGV[1]}"


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_commands_issued_together_share_one_pipeline() -> None:
    async def go() -> tuple[list[Any], int]:
        client = aioredis.Redis.from_url(REDIS_URL)
        pipelines = 0
        real = client.pipeline

        def counting(*args: Any, **kwargs: Any) -> Any:
            nonlocal pipelines
            pipelines += 1
            return real(*args, **kwargs)

        client.pipeline = counting  # type: ignore[method-assign]
        auto = AutoPipeline(client)
        key = f"t-auto-{uuid.uuid4().hex}"
        sha = auto.script(ECHO_LUA)
        await client.script_load(ECHO_LUA)
        try:
            replies = await asyncio.gather(
                *(auto.execute("SADD", key, str(n)) for n in range(50)),
                auto.execute("SCARD", key),
                auto.evalsha(sha, [key], ["x"]),
            )
        finally:
            await client.delete(key)
            await client.aclose()
        return replies, pipelines

    replies, pipelines = run(go())
    assert replies[:50] == [1] * 50
    assert replies[50] == 50  # in order: after every SADD of the same batch
    assert replies[51][1] == b"x"
    assert pipelines == 1


def test_a_script_missing_after_a_redis_restart_is_loaded_and_run() -> None:
    async def go() -> Any:
        client = aioredis.Redis.from_url(REDIS_URL)
        auto = AutoPipeline(client)
        source = f"return '{uuid.uuid4().hex}'"  # a script Redis has never seen
        try:
            return source, await auto.evalsha(auto.script(source), ["k"], [])
        finally:
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
            await client.aclose()

    with pytest.raises(redis.ConnectionError):
        run(go())
