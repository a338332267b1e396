"""The webhook's hand-off: the door's state, the take policy, the entries and the taker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any, cast

import orjson
import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import REDIS_URL
from tripline.adapters.redis_clients import AsyncRedis, async_redis
from tripline.adapters.redis_io import AutoPipeline
from tripline.adapters.store import Keys
from tripline.conf.schema import RedisConfig
from tripline.edge import handoff
from tripline.edge.handoff import (
    Door,
    Taker,
    decode,
    encode,
    oldest_age,
    someone_else,
    take_now,
)
from tripline.messages import Alert, Priority, Snapshot

ids = st.text(min_size=1, max_size=40)  # separators, braces, any code point
numbers = st.floats(allow_nan=False, allow_infinity=False, width=64)

alerts = st.builds(
    Alert,
    idempotency_key=ids,
    sensor_id=ids,
    customer_id=ids,
    alert_type=ids,
    timestamp=numbers,
    firing=st.booleans(),
    severity=st.text(max_size=10),
    current_value=numbers,
    threshold=numbers,
    unit=st.text(max_size=10),
    reference_id=ids,
    telemetry_hash=st.text(max_size=16),
    accepted_at=numbers,
    retained=st.booleans(),
    priority=st.sampled_from(list(Priority)),
)


def sample(sensor: str, priority: Priority = Priority.NORMAL) -> Alert:
    return Alert(
        idempotency_key=f"k-{sensor}",
        sensor_id=sensor,
        customer_id="C-1",
        alert_type="temp_high",
        timestamp=1.0,
        firing=True,
        severity="",
        current_value=9.5,
        threshold=8.0,
        unit="celsius",
        reference_id=f"r-{sensor}",
        telemetry_hash="h",
        accepted_at=2.0,
        priority=priority,
    )


# -- pure parts ---------------------------------------------------------------------------------


@given(st.lists(alerts, max_size=5), numbers.filter(lambda x: abs(x) < 1e12))
def test_an_entry_gives_back_the_alert_and_when_it_was_handed_off(
    batch: list[Alert], at: float
) -> None:
    entries = encode(batch, at)
    back = [decode(e) for e in entries]
    assert [a for _, a in back] == batch
    assert all(t == round(at, 3) for t, _ in back)


@pytest.mark.parametrize(
    "entry",
    [b"", b"x", b"[]", b"{}", b'{"at": 1}', b'{"at": "x", "alert": {}}', b'{"alert": []}', b"\xff"],
)
def test_a_foreign_entry_is_refused_with_a_clear_error(entry: bytes) -> None:
    with pytest.raises(ValueError, match="not a handed-off alert"):
        decode(entry)


def test_the_head_s_age_empty_foreign_and_from_the_future() -> None:
    (entry,) = encode([sample("S")], 100.0)
    assert oldest_age(None, 150.0) is None
    assert oldest_age(entry, 100.25) == pytest.approx(0.25)
    assert oldest_age(entry, 90.0) == 0.0  # another instance's clock ahead: not negative
    assert oldest_age(b"garbage", 100.0) == float("inf")  # taken at once, dropped


@pytest.mark.parametrize(
    ("idle", "age", "take"),
    [
        (True, None, False),  # nothing waits
        (True, 0.0, True),  # an idle door takes at once
        (False, 0.0, False),  # a busy one leaves it to an idle one
        (False, 0.249, False),
        (False, 0.25, True),  # ... until it waited max_wait
        (False, float("inf"), True),
    ],
)
def test_when_a_door_takes(idle: bool, age: float | None, take: bool) -> None:
    assert take_now(idle=idle, oldest_age=age, max_wait=0.25) is take


def test_a_door_is_busy_with_a_stream_of_requests_and_idle_after_a_quiet_moment() -> None:
    door = Door()
    assert door.idle(0.0)
    assert not door.busy()
    door.enter()
    assert door.busy()
    assert not door.idle(100.0)
    door.leave(10.0)
    assert not door.busy()  # a lone request since the last hand-on
    assert not door.idle(10.0 + handoff.QUIET_SECONDS / 2)  # just answered
    assert door.idle(10.0 + handoff.QUIET_SECONDS)
    door.enter()
    door.leave(11.0)
    assert door.busy()  # two since the last hand-on: a stream
    door.since_flush = 0
    assert not door.busy()


def test_critical_alerts_are_never_handed_off() -> None:
    assert not handoff.handable(sample("S", Priority.CRITICAL))
    assert all(handoff.handable(sample("S", p)) for p in Priority if p != Priority.CRITICAL)


# -- the taker, on real Redis -----------------------------------------------------------------


class Routed:
    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    async def __call__(
        self, alerts: list[Alert], _snapshots: Mapping[str, Snapshot] | None = None
    ) -> None:
        self.alerts.extend(alerts)


def taker_for(key: str, door: Door, routed: Routed, pipeline: list[AutoPipeline]) -> Taker:
    conf = RedisConfig(url=REDIS_URL)

    def auto() -> AutoPipeline:
        if not pipeline:
            pipeline.append(AutoPipeline(async_redis(conf, connections=1)))
        return pipeline[0]

    def connect() -> AsyncRedis:
        return async_redis(conf, connections=1, socket_timeout=5.0)

    return Taker(
        key=key,
        idle_key=f"{key}:idle",
        door=door,
        pipeline=auto,
        connect=connect,
        route=routed,
        max_wait=0.2,
    )


def test_a_busy_door_takes_only_what_waited_max_wait(
    redis_client: redis.Redis, prefix: str
) -> None:
    key = Keys(prefix).handoff()
    now = time.time()
    redis_client.rpush(key, *encode([sample("OLD")], now - 1.0), *encode([sample("NEW")], now))
    door, routed, pipe = Door(), Routed(), list[AutoPipeline]()
    door.enter()  # a request in hand: busy

    async def go() -> tuple[int, int]:
        taker = taker_for(key, door, routed, pipe)
        try:
            first = await taker.take_once()  # the head waited 1 s: everything is taken
            redis_client.rpush(key, *encode([sample("YOUNG")], time.time()))
            second = await taker.take_once()  # 0.05 s old: left for an idle door
            return first, second
        finally:
            await taker.aclose()
            for p in pipe:
                await p.aclose()

    first, second = asyncio.run(go())
    assert (first, second) == (2, 0)
    assert [a.sensor_id for a in routed.alerts] == ["OLD", "NEW"]
    assert [
        decode(e)[1].sensor_id for e in cast("list[bytes]", redis_client.lrange(key, 0, -1))
    ] == ["YOUNG"]


def test_foreign_entries_are_dropped_and_the_rest_routed(
    redis_client: redis.Redis, prefix: str
) -> None:
    key = Keys(prefix).handoff()
    redis_client.rpush(key, b"junk", *encode([sample("A"), sample("B")], time.time()), b"{}")
    door, routed, pipe = Door(), Routed(), list[AutoPipeline]()  # idle: a blocking take

    async def go() -> int:
        taker = taker_for(key, door, routed, pipe)
        try:
            return await taker.take_once()
        finally:
            await taker.aclose()
            for p in pipe:  # an idle door says so through it
                await p.aclose()

    assert asyncio.run(go()) == 2
    assert [a.sensor_id for a in routed.alerts] == ["A", "B"]
    assert redis_client.llen(key) == 0


def test_the_taker_survives_a_wrong_key_and_takes_once_it_is_a_list(
    redis_client: redis.Redis, prefix: str
) -> None:
    key = Keys(prefix).handoff()
    redis_client.set(key, "not a list")  # WRONGTYPE on every take
    door, routed, pipe = Door(), Routed(), list[AutoPipeline]()

    async def go() -> None:
        taker = taker_for(key, door, routed, pipe)
        taker.start()
        try:
            await asyncio.sleep(0.2)  # failing, backing off
            redis_client.delete(key)
            redis_client.rpush(key, *encode([sample("AFTER")], time.time()))
            for _ in range(100):
                if routed.alerts:
                    break
                await asyncio.sleep(0.05)
        finally:
            await taker.aclose()
            for p in pipe:
                await p.aclose()

    asyncio.run(go())
    assert [a.sensor_id for a in routed.alerts] == ["AFTER"]


def test_entries_survive_json_round_trip_of_odd_ids() -> None:
    odd = sample('}{:|"\\\u2028\x00')
    (entry,) = encode([odd], 1.0)
    assert orjson.loads(entry)["alert"]["sensor_id"] == odd.sensor_id
    assert decode(entry)[1] == odd


class CancelTurnsIntoAnError:
    """A client like redis-py's cluster one: a pop cancelled mid-connect raises a connection
    error instead, and the next command would wait (connecting again) for long."""

    def __init__(self) -> None:
        self.pops = 0

    async def execute_command(self, *_args: object) -> object:
        self.pops += 1
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            raise redis.ConnectionError("connecting again") from None
        return None

    async def aclose(self) -> None:
        return None


class Answering:
    """An auto-pipeline answering every command at once with an empty reply."""

    def send(self, *_command: object) -> asyncio.Future[Any]:
        answered: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        answered.set_result([])
        return answered


def test_a_cancel_turned_into_an_error_still_stops_the_taker() -> None:
    client = CancelTurnsIntoAnError()
    door, routed = Door(), Routed()  # idle: a blocking take

    async def go() -> tuple[bool, float]:
        taker = Taker(
            key="k",
            idle_key="k:idle",
            door=door,
            pipeline=lambda: cast("AutoPipeline", Answering()),
            connect=lambda: cast("AsyncRedis", client),
            route=routed,
            max_wait=0.2,
        )
        taker.start()
        await asyncio.sleep(0.05)  # in its pop
        task = taker._task
        assert task is not None
        began = time.monotonic()
        await taker.aclose()
        return task.done(), time.monotonic() - began

    done, took = asyncio.run(go())
    # Stopped at once, not backing off and popping again until aclose gave up on it (2 s):
    # a loop closed with it pending ran its handlers at garbage collection, with no loop.
    assert done
    assert took < 1.0
    assert client.pops == 1


@pytest.mark.parametrize(
    ("members", "others"),
    [
        ([], False),  # nobody idle: hand nothing off
        ([b"me"], False),  # only this door (it said so before it turned busy)
        ([b"me", b"other"], True),
        ([b"other"], True),
        ([b"m"], True),  # a prefix of the name is another door
        ([b"mee"], True),
    ],
)
def test_someone_else_is_idle(members: list[bytes], others: bool) -> None:
    assert someone_else(members, "me") is others


def test_an_idle_door_says_so_and_a_busy_one_takes_itself_off_and_looks_for_others(
    redis_client: redis.Redis, prefix: str
) -> None:
    key = Keys(prefix).handoff()
    idle_key = f"{key}:idle"
    door, routed, pipe = Door(), Routed(), list[AutoPipeline]()

    async def go() -> list[tuple[bool, list[bytes]]]:
        taker = taker_for(key, door, routed, pipe)
        seen: list[tuple[bool, list[bytes]]] = []

        def look() -> None:
            idle = cast("list[bytes]", redis_client.zrange(idle_key, 0, -1))
            seen.append((door.others_idle, idle))

        try:
            await taker.take_once()  # idle: on the set, alone on it (a pop of 0.25 s)
            look()
            redis_client.zadd(idle_key, {"gone": time.time() - 5, "other": time.time()})
            door.enter()  # busy now
            await taker.take_once()
            look()
            redis_client.zadd(idle_key, {"other": time.time() - 5})  # it went quiet
            await taker.take_once()
            look()
            return seen
        finally:
            await taker.aclose()
            for p in pipe:
                await p.aclose()

    seen = asyncio.run(go())
    assert seen[0][0] is False  # nobody else
    assert len(seen[0][1]) == 1  # this door, by its name
    assert seen[1] == (True, [b"gone", b"other"])  # itself off the set; "other" is fresh
    assert seen[2] == (False, [b"gone", b"other"])  # nobody fresh but itself


def test_a_broken_idle_set_hands_off_nothing_and_still_takes_what_was_handed_off(
    redis_client: redis.Redis, prefix: str
) -> None:
    key = Keys(prefix).handoff()
    redis_client.set(f"{key}:idle", "not a sorted set")  # WRONGTYPE for every idle command
    redis_client.rpush(key, *encode([sample("OLD")], time.time() - 1.0))
    door, routed, pipe = Door(others_idle=True), Routed(), list[AutoPipeline]()
    door.enter()  # busy

    async def go() -> tuple[int, int]:
        taker = taker_for(key, door, routed, pipe)
        try:
            busy = await taker.take_once()  # the overdue entry is taken all the same
            door.leave(time.monotonic() - 1.0)  # idle: says so (fails), then pops
            redis_client.rpush(key, *encode([sample("NEXT")], time.time()))
            idle = await taker.take_once()
            return busy, idle
        finally:
            await taker.aclose()
            for p in pipe:
                await p.aclose()

    assert asyncio.run(go()) == (1, 1)
    assert [a.sensor_id for a in routed.alerts] == ["OLD", "NEXT"]
    assert door.others_idle is False  # nobody known idle: the intake hands nothing off


def test_a_stopped_door_leaves_the_idle_set(redis_client: redis.Redis, prefix: str) -> None:
    key = Keys(prefix).handoff()
    door, routed, pipe = Door(), Routed(), list[AutoPipeline]()

    async def go() -> tuple[int, int]:
        taker = taker_for(key, door, routed, pipe)
        try:
            await taker.take_once()  # idle: on the set
            listed = redis_client.zcard(f"{key}:idle")
        finally:
            await taker.aclose()
            for p in pipe:
                await p.aclose()
        return listed, redis_client.zcard(f"{key}:idle")

    assert asyncio.run(go()) == (1, 0)
