"""The ladder's record fields: read back whatever Redis holds, never raise; REACH_LUA's moves."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import orjson
import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

from tripline.adapters.attempts import (
    FIELDS,
    PUSH_LUA,
    REACH_LUA,
    Ladder,
    attempt_entry,
    evidence_from_pushed,
    follow_key,
    pushed_blob,
    reach_args,
    resolved_key,
)
from tripline.adapters.store import Keys
from tripline.pipeline.reach import CallResult, Evidence, ResultReason

KEYS = Keys("tl")


@given(
    st.lists(
        st.one_of(st.none(), st.binary(max_size=40)), min_size=len(FIELDS), max_size=len(FIELDS)
    )
)
def test_any_stored_bytes_read_as_a_ladder_without_raising(values: list[bytes | None]) -> None:
    ladder = Ladder.read("k", list(values))
    assert isinstance(ladder.attempts, list)
    assert ladder.exists == any(v for v in values)


def test_a_missing_record_reads_as_gone() -> None:
    assert not Ladder.read("k", [None] * len(FIELDS)).exists


def test_with_result_fills_in_only_the_current_attempt() -> None:
    first = attempt_entry(n=1, now=0.0, contact="A", phone="+1***", backend="genesys", call_id="c1")
    second = attempt_entry(
        n=2, now=5.0, contact="B", phone="+1***", backend="genesys", call_id="c2"
    )
    ladder = Ladder("k", n=2, attempts=[first, second])
    filled = ladder.with_result(Evidence(CallResult.NOT_REACHED, ResultReason.BUSY, "X"), 10.0)
    assert [a["result"] for a in filled] == ["pending", "not_reached"]
    assert filled[1]["resultReason"] == "busy"
    assert filled[1]["wrapupCode"] == "X"
    assert ladder.attempts[1]["result"] == "pending"  # the ladder read is not changed


@pytest.mark.parametrize(
    "evidence",
    [
        Evidence(CallResult.REACHED, "", "CODE"),
        Evidence(CallResult.NOT_REACHED, ResultReason.DO_NOT_CALL, "DNC", do_not_call=True),
    ],
)
def test_a_pushed_result_round_trips(evidence: Evidence) -> None:
    pushed = orjson.loads(pushed_blob("CA1", evidence, 3))
    assert pushed["callId"] == "CA1"
    assert evidence_from_pushed(pushed) == evidence


@pytest.mark.parametrize("pushed", [{}, {"result": "maybe"}, {"result": None}, {"result": []}])
def test_an_unreadable_pushed_result_is_none(pushed: dict[str, object]) -> None:
    assert evidence_from_pushed(pushed) is None


def test_keys_escape_ids_and_keep_their_hash_tags() -> None:
    assert follow_key(KEYS, "a}b:c") == "tl:{f:a%7Db%3Ac}:follow"
    assert resolved_key(KEYS, "C{1}", "S:1") == "tl:{c:C%7B1%7D}:resolved:S%3A1"


# Of this run alone: another checkout's suite may run this file against the same Redis.
PREFIX = f"tattempts{uuid.uuid4().hex[:8]}"


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    c = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    yield c
    for key in c.scan_iter(match=f"{PREFIX}:*"):
        c.delete(key)
    c.close()


def _move(client: redis.Redis, n: int | str, states: str, **fields: object) -> int:
    keys, args = reach_args(Keys(PREFIX), "A1", n=n, states=states, event="e", now=1.0, **fields)
    return int(client.eval(REACH_LUA, 2, *keys, *args))


def test_reach_lua_moves_an_attempt_only_from_the_states_named(client: redis.Redis) -> None:
    record = Keys(PREFIX).record("A1")
    assert _move(client, 1, "placed", attemptState="waiting") == -1  # no record
    client.hset(record, mapping={"attempt": "1", "attemptState": "placed"})
    assert _move(client, 2, "placed", attemptState="waiting") == 0  # another attempt
    assert _move(client, 1, "waiting", attemptState="queued") == 0  # another state
    assert _move(client, 1, "queued,placed", attemptState="waiting") == 1
    assert client.hget(record, "attemptState") == b"waiting"
    # Two paths racing for the same move: exactly one wins.
    assert _move(client, 1, "waiting", attempt="2", attemptState="queued") == 1
    assert _move(client, 1, "waiting", attempt="2", attemptState="queued") == 0
    history = client.lrange(Keys(PREFIX).history("A1"), 0, -1)
    assert len(history) == 2


def test_push_lua_keeps_a_result_only_for_the_current_call(client: redis.Redis) -> None:
    record = Keys(PREFIX).record("A1")
    assert client.eval(PUSH_LUA, 1, record, "1", "CA1", b"x", 0) == 0  # no record: nothing made
    assert not client.exists(record)
    client.hset(record, mapping={"attempt": "2", "attemptCallId": "CA2", "attemptState": "placed"})
    blob = pushed_blob("CA1", Evidence(CallResult.REACHED), 0)
    assert client.eval(PUSH_LUA, 1, record, "2", "CA1", blob, 0) == 0  # an older call's result
    assert client.eval(PUSH_LUA, 1, record, "1", "CA2", blob, 0) == 0  # another attempt
    assert client.hget(record, "pushed") is None
    assert client.eval(PUSH_LUA, 1, record, "2", "CA2", blob, 3) == 1
    assert client.hget(record, "pushed") == blob
    # A replay, or an earlier status arriving late, never replaces a later one.
    assert client.eval(PUSH_LUA, 1, record, "2", "CA2", b"late", 3) == 0
    assert client.eval(PUSH_LUA, 1, record, "2", "CA2", b"late", 2) == 0
    assert client.eval(PUSH_LUA, 1, record, "2", "CA2", b"later", 4) == 1
    assert client.hget(record, "pushed") == b"later"


@pytest.mark.parametrize(
    "fields",
    [
        {"state": "dialing"},  # the first call, its answer not back yet
        {"state": "called", "attempt": "2", "attemptState": "dialing"},  # a re-attempt
    ],
)
def test_a_push_that_overtakes_the_dial_answer_is_kept(
    client: redis.Redis, fields: dict[str, str]
) -> None:
    record = Keys(PREFIX).record("A1")
    for name, value in fields.items():
        client.hset(record, name, value)
    n = fields.get("attempt", "1")
    assert client.eval(PUSH_LUA, 1, record, n, "CA9", b"early", 0) == 1
    assert client.hget(record, "pushedCall") == b"CA9"
