"""The follower's plain parts: whom the ladder calls, as whom, and the config it reads."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import Any, cast

import pytest
import redis
import redis.asyncio as aioredis

from tests.conftest import REDIS_URL, plain_alert
from tripline.actors.dialing.follow import (
    Follower,
    as_customer,
    contacts_of,
    ladder_rules,
    last_score,
    wrapup_codes,
)
from tripline.actors.dialing.gate import call_member
from tripline.actors.dialing.records import Records
from tripline.adapters.backends import Backends
from tripline.adapters.redis_io import AutoPipeline
from tripline.adapters.store import Keys
from tripline.conf.schema import CrmConfig, DialerConfig, OutcomesConfig, ReachConfig, RedisConfig
from tripline.messages import Contact, Customer, DialIntent, Priority
from tripline.pipeline.comply import Allowed, Blocked, ComplyRules, comply
from tripline.pipeline.reach import CallResult, Evidence
from tripline.service.controls import OperatorControls
from tripline.service.stats import Stats

CUSTOMER = Customer(
    customer_id="C1",
    name="Acme Cold Store",
    phone="+14155550100",
    timezone="America/Los_Angeles",
    do_not_disturb=False,
    do_not_call=False,
    contacts=(
        Contact(name="Night guard", phone="+14155550102", order=2, timezone="Asia/Tokyo"),
        Contact(name="Manager", phone="+14155550101", order=1, call_consent=False),
    ),
)


def test_the_customer_is_the_first_contact_then_the_crm_order() -> None:
    assert [c.name for c in contacts_of(CUSTOMER)] == ["Acme Cold Store", "Manager", "Night guard"]
    own = contacts_of(CUSTOMER)[0]
    assert (own.phone, own.timezone, own.order) == (CUSTOMER.phone, CUSTOMER.timezone, 0)


def test_a_contact_is_judged_with_its_own_number_zone_and_consent() -> None:
    manager, guard = contacts_of(CUSTOMER)[1:]
    seen = as_customer(CUSTOMER, guard)
    assert (seen.phone, seen.timezone, seen.name) == (guard.phone, "Asia/Tokyo", "Night guard")
    assert seen.contacts == ()
    assert not as_customer(CUSTOMER, manager).call_consent
    # a contact without a zone of its own is in the customer's
    assert as_customer(CUSTOMER, replace(guard, timezone="")).timezone == CUSTOMER.timezone


@pytest.mark.parametrize(
    ("customer", "blocked"),
    [
        (replace(CUSTOMER, call_consent=False), True),  # the account holder revoked: nobody
        (replace(CUSTOMER, do_not_call=True), True),
        (replace(CUSTOMER, do_not_disturb=True), True),
        (CUSTOMER, False),
    ],
)
def test_the_account_holders_flags_hold_for_every_contact(
    customer: Customer, blocked: bool
) -> None:
    guard = contacts_of(customer)[2]
    rules = ComplyRules(safety_override=frozenset({"co_alarm"}))  # any hour: only flags matter
    verdict = comply(as_customer(customer, guard), now=0.0, rules=rules, alert_type="co_alarm")
    assert isinstance(verdict, Blocked if blocked else Allowed)


def test_every_attempt_counts_against_the_caps_as_a_call_of_its_own() -> None:
    alert = plain_alert()
    first = DialIntent(
        intent_id="K", alert=alert, customer=CUSTOMER, priority=Priority.HIGH, enqueued_at=0.0
    )
    assert call_member(first) == "K"
    assert call_member(replace(first, attempt=3)) == "K#3"


def test_the_config_tables_become_the_ladders_rules() -> None:
    rules = ladder_rules(
        ReachConfig(
            max_attempts={"critical": 5, "high": 2, "normal": 1, "low": 1},
            retry_after_seconds={"critical": 60, "high": 120.5, "normal": 1, "low": 1},
            attempts_per_contact={"critical": 3, "high": 1, "normal": 1, "low": 1},
        )
    )
    assert rules.max_attempts[Priority.CRITICAL] == 5
    assert rules.retry_after[Priority.HIGH] == 120.5
    assert rules.attempts_per_contact[Priority.CRITICAL] == 3
    codes = wrapup_codes(OutcomesConfig(wrapup_do_not_call=["STOP"]))
    applied = codes.apply(Evidence(CallResult.REACHED, "", "STOP"))
    assert applied.do_not_call


def test_the_follow_indexs_farthest_score_is_read_in_either_protocols_shape(
    redis_client: redis.Redis, prefix: str
) -> None:
    """The index's TTL upkeep failed every minute on RESP3's [[member, score]] (IndexError)."""
    assert last_score([]) is None
    assert last_score([b"k", b"12.5"]) == 12.5  # RESP2
    assert last_score([[b"k", 12.5]]) == 12.5  # RESP3
    key = f"{prefix}:follow"
    redis_client.zadd(key, {"a": 5.0, "b": 99.5})

    async def read() -> Any:
        client = aioredis.Redis.from_url(REDIS_URL)
        auto = AutoPipeline(client)
        try:
            return await auto.execute("ZRANGE", key, -1, -1, "WITHSCORES")
        finally:
            await auto.aclose()
            await client.aclose()

    assert last_score(asyncio.run(read())) == 99.5  # the shape this connection answers in


@pytest.mark.parametrize("attempt", [1, 2])
def test_a_result_pushed_while_the_call_is_being_scheduled_is_taken_now(
    redis_client: redis.Redis, prefix: str, attempt: int
) -> None:
    """Twilio's status callback can land between the follower's look for a pushed result and
    its writing the follow entry (a poll's time later). The push's own entry (due now) must
    survive: overwritten, the result waited for the poll (60 s in the flaky CI run)."""
    keys = Keys(prefix)
    a = plain_alert(f"k-{prefix}")
    intent = DialIntent(
        intent_id=a.idempotency_key,
        alert=a,
        customer=CUSTOMER,
        priority=Priority.HIGH,
        enqueued_at=time.time(),
        attempt=attempt,
    )
    record = keys.record(a.idempotency_key)
    redis_client.hset(record, mapping={"attempt": str(attempt), "attemptState": "placed"})

    async def go() -> float | None:
        records = Records(
            conf=DialerConfig(),
            redis_conf=RedisConfig(url=REDIS_URL),
            keys=keys,
            queue_key=keys.dial_queue("t"),
            pending_key=keys.pending("t"),
            record_ttl=86400,
            stats=Stats(),
            clock=time.time,
            tell=lambda _m: None,
        )
        await records.connect()
        follower = Follower(
            records=records,
            backends=cast("Backends", None),
            instance="t",
            rules=ComplyRules(),
            reach=ReachConfig(),
            outcomes=OutcomesConfig(poll_seconds=60.0),
            crm_conf=CrmConfig(),
            controls=OperatorControls(),
            record_ttl=86400,
            stats=Stats(),
            clock=time.time,
            tell=lambda _m: None,
        )
        execute = records.auto.execute

        async def then_a_push(*command: Any) -> Any:
            reply = await execute(*command)
            if command[0] in ("HEXISTS", "HMGET") and command[1] == record:
                # What edge/providers.py does for a push: the result kept, the entry due now.
                redis_client.hset(record, "pushed", "{}")
                redis_client.zadd(follower.index, {a.idempotency_key: 0})
            return reply

        records.auto.execute = then_a_push  # type: ignore[method-assign]
        try:
            if attempt == 1:
                await follower.placed_first(intent)
            else:
                await follower._schedule(a.idempotency_key, time.time() + 60)
                await follower._overtaken(a.idempotency_key, time.time())
        finally:
            await records.close()
        return redis_client.zscore(follower.index, a.idempotency_key)

    due = asyncio.run(go())
    assert due is not None
    assert due <= time.time()  # due now, not after a poll's minute
