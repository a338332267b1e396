"""The append path: record scripts add their ledger entry atomically, only when they change."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
import redis

from tests.conftest import alert
from tripline.adapters.attempts import REACH_LUA, reach_args
from tripline.adapters.ledger.entry import PhoneHasher, from_stream
from tripline.adapters.store import (
    ACCEPT_LUA,
    ANNOTATE_LUA,
    FROM_PENDING,
    TRANSITION_LUA,
    Keys,
    accept_args,
    annotate_args,
    iso,
    text,
    transition_args,
)
from tripline.messages import Outcome, Reason, State
from tripline.pipeline.validate import Limits, Rejected, validate

pytestmark = pytest.mark.integration
HASHER = PhoneHasher(b"k")


def _accept(client: redis.Redis, keys: Keys, key: str) -> None:
    checked = validate(orjson.dumps(alert(key=key)), now=time.time(), limits=Limits())
    assert not isinstance(checked, Rejected)
    k, a = accept_args(keys, checked[0], 3600)
    client.eval(ACCEPT_LUA, len(k), *k, *a)


def _entries(client: redis.Redis, keys: Keys) -> list[tuple[str, dict[str, Any]]]:
    reply: Any = client.xrange(keys.ledger_entries())
    return [(text(i), {text(f): v for f, v in fields.items()}) for i, fields in reply]


def test_a_terminal_transition_appends_its_evidence_once(
    redis_client: redis.Redis, prefix: str
) -> None:
    keys = Keys(prefix, ledger=True)
    _accept(redis_client, keys, "K:1{x}")
    facts = orjson.dumps({"localTime": "2026-11-27T19:00:00-05:00", "rulesVersion": "7"}).decode()
    k, a = transition_args(
        keys,
        "K:1{x}",
        state=Outcome.DEFERRED,
        now=1_795_000_060.0,
        reason=Reason.OUTSIDE_CALLING_WINDOW,
        allowed_from=FROM_PENDING,
        detail="after hours",
        facts=facts,
    )
    assert redis_client.eval(TRANSITION_LUA, len(k), *k, *a) == 1
    # A second decision is refused by the record: it appends nothing.
    k2, a2 = transition_args(keys, "K:1{x}", state=Outcome.CALLED, now=1_795_000_061.0)
    assert redis_client.eval(TRANSITION_LUA, len(k2), *k2, *a2) == 0
    [(stream_id, fields)] = _entries(redis_client, keys)
    entry = from_stream(prefix, stream_id, fields, HASHER)
    assert entry["kind"] == "decision"
    assert (entry["outcome"], entry["reason"]) == ("deferred", "outside_calling_window")
    assert entry["idempotencyKey"] == "K:1{x}"
    assert entry["at"] == iso(1_795_000_060.0)
    assert entry["evidence"]["facts"]["localTime"] == "2026-11-27T19:00:00-05:00"
    assert entry["detail"] == "after hours"
    assert "alert" not in entry["evidence"]


def test_non_terminal_moves_and_plain_notes_append_nothing(
    redis_client: redis.Redis, prefix: str
) -> None:
    keys = Keys(prefix, ledger=True)
    _accept(redis_client, keys, "K2")
    k, a = transition_args(keys, "K2", state=State.QUEUED, now=1.0, allowed_from=State.ACCEPTED)
    assert redis_client.eval(TRANSITION_LUA, len(k), *k, *a) == 1
    k, a = annotate_args(keys, "K2", now=2.0, event="noted", detail="x")
    assert redis_client.eval(ANNOTATE_LUA, len(k), *k, *a) == 1
    assert _entries(redis_client, keys) == []
    k, a = annotate_args(keys, "K2", now=3.0, event="task_raised", taskId="T-9")
    assert redis_client.eval(ANNOTATE_LUA, len(k), *k, *a) == 1
    [(stream_id, fields)] = _entries(redis_client, keys)
    entry = from_stream(prefix, stream_id, fields, HASHER)
    assert (entry["kind"], entry["taskId"]) == ("task", "T-9")


def test_an_attempt_appends_with_its_number_hashed_and_masked(
    redis_client: redis.Redis, prefix: str
) -> None:
    keys = Keys(prefix, ledger=True)
    _accept(redis_client, keys, "K3")
    k, a = reach_args(
        keys,
        "K3",
        n="*",
        states="-",
        event="attempt_placed",
        now=5.0,
        attempt="2",
        attemptState="placed",
        attemptPhone="+1 (415) 555-0100",
        attemptBackend="twilio",
        attemptCallId="CA1",
    )
    assert redis_client.eval(REACH_LUA, len(k), *k, *a) == 1
    [(stream_id, fields)] = _entries(redis_client, keys)
    entry = from_stream(prefix, stream_id, fields, HASHER)
    assert entry["kind"] == "attempt"
    assert (entry["backend"], entry["callId"], entry["attempt"]) == ("twilio", "CA1", 2)
    assert entry["phoneHash"] == HASHER.digest("+14155550100")  # normalised before hashing
    assert entry["phoneMasked"] != "+14155550100"
    assert b"555-0100" not in orjson.dumps(entry)


def test_without_the_ledger_nothing_is_appended(redis_client: redis.Redis, prefix: str) -> None:
    keys = Keys(prefix)
    _accept(redis_client, keys, "K4")
    k, a = transition_args(keys, "K4", state=Outcome.SUPPRESSED, now=1.0, reason=Reason.COOLDOWN)
    assert len(k) == 2
    assert redis_client.eval(TRANSITION_LUA, len(k), *k, *a) == 1
    assert not redis_client.exists(keys.ledger_entries())
