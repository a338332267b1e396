"""The store: record timestamps (iso against the standard library) and queued work round trips."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime
from urllib.parse import unquote

import orjson
import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

from tests.actors.helpers import intent
from tests.conftest import alert, plain_alert
from tripline.adapters.store import (
    READING_LUA,
    Keys,
    iso,
    keep_commands,
    work_from_json,
    work_to_json,
)
from tripline.messages import Contact, Priority, Reason, TaskIntent
from tripline.pipeline.validate import Limits, Rejected, validate


@pytest.mark.parametrize(
    ("epoch", "expected"),
    [
        (0.0, "1970-01-01T00:00:00.000Z"),
        (1795775895.978, "2026-11-27T10:38:15.978Z"),
        (1795775895.9996, "2026-11-27T10:38:16.000Z"),  # rounds into the next second
        (1795775895.0004, "2026-11-27T10:38:15.000Z"),
        # A ledger query's earliest bound (year 1): four digits, so it sorts before 1970.
        (-62135596800.0, "0001-01-01T00:00:00.000Z"),
        (-46388678400.0, "0500-01-01T00:00:00.000Z"),
    ],
)
def test_iso_table(epoch: float, expected: str) -> None:
    assert iso(epoch) == expected


@given(st.integers(min_value=0, max_value=4_102_444_800_000))
def test_iso_matches_datetime_for_any_millisecond(ms: int) -> None:
    stamp = datetime.fromtimestamp(ms // 1000, UTC).replace(microsecond=(ms % 1000) * 1000)
    assert iso(ms / 1000) == stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def test_queued_work_survives_its_persisted_form() -> None:
    checked = validate(orjson.dumps(alert()), now=time.time(), limits=Limits())
    assert not isinstance(checked, Rejected)
    call = replace(
        intent(checked[0], Priority.HIGH), facts=(("rule", "calling_window:US"),), not_before=5.0
    )
    again = replace(call, attempt=3, contact="Site manager", scheduled_for=1.5e9)
    task = TaskIntent(
        alert=checked[0],
        reason=Reason.OUTSIDE_CALLING_WINDOW,
        due=123.5,
        detail="local time Tue 03:00",
        facts=(("window", "08:00-20:00"),),
    )
    assert work_from_json(work_to_json(call)) == call
    assert work_from_json(work_to_json(again)) == again  # a re-attempt stays one after a restart
    assert work_from_json(work_to_json(task)) == task


def test_queued_work_keeps_the_customers_contacts() -> None:
    checked = validate(orjson.dumps(alert()), now=time.time(), limits=Limits())
    assert not isinstance(checked, Rejected)
    call = intent(checked[0], Priority.CRITICAL)
    contacts = (
        Contact(name="Ana", phone="+14155550101", role="spouse", order=1, timezone="US/Pacific"),
        Contact(name="Bo", phone="+14155550102", order=2, call_consent=False),
    )
    call = replace(call, customer=replace(call.customer, contacts=contacts))
    back = work_from_json(work_to_json(call))
    assert back == call
    assert isinstance(back, type(call))
    assert all(isinstance(c, Contact) for c in back.customer.contacts)


def test_queued_work_from_before_contacts_reads_with_none() -> None:
    checked = validate(orjson.dumps(alert()), now=time.time(), limits=Limits())
    assert not isinstance(checked, Rejected)
    call = intent(checked[0], Priority.HIGH)
    doc = orjson.loads(work_to_json(call))
    del doc["customer"]["contacts"]  # work an older version queued
    assert work_from_json(orjson.dumps(doc)) == call


# --- key-safe ids ---------------------------------------------------------------------------

_KINDS = {  # every key built from ids: (hash-tag letter, suffix) -> the Keys method
    ("a", "rec"): "record",
    ("a", "hist"): "history",
    ("r", "ctx"): "context",
    ("r", "sib"): "siblings",
    ("n", "calls"): "number_calls",
    ("q", "dialq"): "dial_queue",
    ("p", "pending"): "pending",
    ("c", "profile"): "customer",
    ("c", "calls"): "customer_calls",
    ("c", "groupn"): "group_counts",
    ("c", "cool"): "cooldown",
    ("c", "readings"): "readings",
    ("c", "flaptask"): "flap_task",
    ("c", "snap"): "snapshot",
    ("c", "group"): "group",
}
_TWO_IDS = {"cooldown", "readings", "flap_task", "snapshot", "group"}
# Ids made of the very characters that shape keys, and of anything else.
_ID = st.text(alphabet=st.sampled_from("ab%{}:-7"), min_size=1, max_size=10) | st.text(
    min_size=1, max_size=6
)


def _key(kind: str, ids: tuple[str, ...]) -> str:
    return str(getattr(Keys("tl"), kind)(*ids))


def _unescape(part: str) -> str:
    return unquote(part) if "%" in part else part


def _parse(key: str) -> tuple[str, tuple[str, ...]]:
    """Read a key back into (kind, ids) by its shape alone: one answer per key, or an error."""
    prefix, rest = key.split(":", 1)
    assert prefix == "tl"
    assert rest.startswith("{")
    tag, tail = rest[1:].split("}", 1)
    letter, owner = tag.split(":", 1)
    parts = tail.split(":")
    assert parts[0] == ""
    kind = _KINDS[(letter, parts[1])]
    ids = (owner, *parts[2:])
    assert len(ids) == (2 if kind in _TWO_IDS else 1)
    return kind, tuple(_unescape(i) for i in ids)


@st.composite
def _built(draw: st.DrawFn) -> tuple[str, tuple[str, ...]]:
    kind = draw(st.sampled_from(sorted(_KINDS.values())))
    return kind, tuple(draw(_ID) for _ in range(2 if kind in _TWO_IDS else 1))


def test_the_issue_s_colliding_ids_build_distinct_keys() -> None:
    # Before escaping, sensor 'Q}:cool:T' of customer 'SECK' had the readings key that sensor
    # 'T' of customer 'SECK}:readings:Q' used as its cooldown: WRONGTYPE killed the shard.
    keys = Keys("tl")
    assert keys.readings("SECK", "Q}:cool:T") != keys.cooldown("SECK}:readings:Q", "T")
    assert keys.cooldown("SECK}:readings:Q", "T") == "tl:{c:SECK%7D%3Areadings%3AQ}:cool:T"


@given(_built())
def test_every_key_reads_back_to_the_kind_and_ids_that_built_it(
    built: tuple[str, tuple[str, ...]],
) -> None:
    # A key that reads back to exactly what built it cannot be built by anything else: no two
    # distinct (kind, ids) tuples share a key. Its hash tag is its owner's alone.
    key = _key(*built)
    assert _parse(key) == built
    assert key.count("{") == key.count("}") == 1


def test_plain_ids_keep_their_keys() -> None:
    # Nearly every id has no separator: its keys are what earlier versions wrote.
    keys = Keys("tl")
    assert keys.record("k-1") == "tl:{a:k-1}:rec"
    assert keys.snapshot("CUST-1", "S.1_x") == "tl:{c:CUST-1}:snap:S.1_x"


def test_keeping_an_alert_names_its_keys_and_never_shortens_them() -> None:
    keys = Keys("tl")
    a = plain_alert("K:1", customer_id="C{1}", sensor_id="S:2", reference_id="R")
    commands = keep_commands(keys, a, 7200)
    assert [c[1] for c in commands] == [
        keys.record("K:1"),
        keys.history("K:1"),
        keys.context("R"),
        keys.siblings("R"),
        keys.readings("C{1}", "S:2"),
    ]
    assert {(c[0], c[2], c[3]) for c in commands} == {("EXPIRE", 7200, "GT")}


def test_a_reading_keeps_its_list_at_least_the_ttl_and_never_shortens_it(
    redis_client: redis.Redis, prefix: str
) -> None:
    key = f"{prefix}:readings"
    script = redis_client.register_script(READING_LUA)
    script(keys=[key], args=[b"1", 10, 3600])
    assert 3590 <= redis_client.ttl(key) <= 3600  # a new list gets the TTL
    redis_client.expire(key, 5 * 86400)  # kept for a deferral due days later
    script(keys=[key], args=[b"2", 10, 3600])
    assert redis_client.ttl(key) > 5 * 86400 - 60  # a new reading does not shorten it
    redis_client.expire(key, 60)
    script(keys=[key], args=[b"3", 10, 3600])
    assert redis_client.ttl(key) > 3500  # and renews a shorter one
