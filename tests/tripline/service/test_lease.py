"""The lease registry's scripts on a real Redis: who may claim whom, and fencing."""

from __future__ import annotations

from collections import Counter

import orjson
import pytest
import redis
from redis.crc import key_slot

from tripline.adapters.store import Keys
from tripline.service.lease import Lease, registry_keys, registry_view, sessions_from
from tripline.service.takeover import adopt, move_index

TTL = 30.0
T0 = 1_000_000.0


def lease(client: redis.Redis, prefix: str, instance: str) -> Lease:
    return Lease(client, Keys(prefix), instance=instance, ttl=TTL, sessions=[(instance, "t/+")])


@pytest.fixture
def pair(redis_client: redis.Redis, prefix: str) -> tuple[Lease, Lease]:
    a, b = lease(redis_client, prefix, "a"), lease(redis_client, prefix, "b")
    assert a.acquire(T0) == ""
    assert b.acquire(T0) == ""
    return a, b


def test_a_live_lease_is_not_claimed(pair: tuple[Lease, Lease]) -> None:
    a, b = pair
    # b has held its lease a whole period, a renewed just now: nothing lapsed.
    assert a.renew(T0 + TTL - 1)
    assert b.renew(T0 + TTL - 1)
    assert b.claim(T0 + TTL + 1) is None


def test_a_lapsed_lease_is_claimed_by_exactly_one(
    redis_client: redis.Redis, prefix: str, pair: tuple[Lease, Lease]
) -> None:
    _, b = pair
    c = lease(redis_client, prefix, "c")
    assert c.acquire(T0) == ""
    now = T0 + TTL + 5  # a stopped renewing at T0; b and c renewed throughout
    for survivor in (b, c):
        for at in range(int(T0) + 10, int(now) + 1, 10):
            assert survivor.renew(float(at))
    assert b.claim(now) == "a"
    assert c.claim(now) is None  # a is b's to adopt while b lives
    assert b.claim(now) == "a"  # b may claim its own claim again (a retried adoption)


def test_the_claimed_instance_is_fenced(pair: tuple[Lease, Lease]) -> None:
    a, b = pair
    b.renew(T0 + 20)
    assert b.claim(T0 + TTL + 1) == "a"
    assert not a.renew(T0 + TTL + 2)  # a was only slow: it must stop, its work is b's now


def test_a_returning_instance_waits_for_its_live_adopter(
    redis_client: redis.Redis, prefix: str, pair: tuple[Lease, Lease]
) -> None:
    _, b = pair
    b.renew(T0 + 20)
    assert b.claim(T0 + TTL + 1) == "a"
    again = lease(redis_client, prefix, "a")  # a restarted: a new token
    assert again.acquire(T0 + TTL + 2) == "b"
    assert b.release("a")
    assert again.acquire(T0 + TTL + 3) == ""
    assert again.renew(T0 + TTL + 4)


def test_a_claim_whose_claimer_died_is_claimed_again(
    redis_client: redis.Redis, prefix: str, pair: tuple[Lease, Lease]
) -> None:
    _, b = pair
    c = lease(redis_client, prefix, "c")
    c.acquire(T0)
    b.renew(T0 + 20)
    assert b.claim(T0 + TTL + 1) == "a"
    # b dies half-way through adopting a; c lives on and takes both over, one at a time.
    for at in range(int(T0) + 10, int(T0 + 3 * TTL), 10):
        assert c.renew(float(at))
    now = T0 + 3 * TTL
    assert c.claim(now) == "a"  # the oldest lapse first; b's claim on it died with b
    assert c.claim(now) == "a"  # until released, c's claim is the same
    assert c.release("a")
    assert c.claim(now) == "b"


def test_after_a_redis_outage_no_one_claims_before_the_others_could_renew(
    pair: tuple[Lease, Lease],
) -> None:
    a, b = pair
    b.renew(T0 + 20)
    a.renew(T0 + 20)
    # Redis away for two minutes: both leases lapsed. b is back first.
    back = T0 + 140
    assert b.renew(back)
    assert b.claim(back + 1) is None  # a may simply not have renewed yet
    assert a.renew(back + 5)  # it was alive: it keeps its work
    assert b.claim(back + TTL + 1) is None
    # Had a really died, b would adopt it a whole period after its own return.
    assert b.renew(back + TTL / 2)
    assert b.renew(back + TTL)
    assert b.claim(back + TTL + 6) == "a"


def test_a_new_instance_claims_no_one_before_a_whole_period(
    redis_client: redis.Redis, prefix: str, pair: tuple[Lease, Lease]
) -> None:
    assert pair  # a and b took their leases at T0 and never renewed
    late = lease(redis_client, prefix, "late")
    now = T0 + 2 * TTL
    assert late.acquire(now) == ""
    assert late.claim(now + 1) is None  # a and b lapsed, but so might anyone's after an outage
    assert late.renew(now + TTL / 2)
    assert late.renew(now + TTL - 1)  # renewed in time: held without a gap since `now`
    assert late.claim(now + TTL + 1) in {"a", "b"}


def test_release_removes_the_dead_instance_only_for_its_claimer(
    redis_client: redis.Redis, prefix: str, pair: tuple[Lease, Lease]
) -> None:
    a, b = pair
    b.renew(T0 + 20)
    assert b.claim(T0 + TTL + 1) == "a"
    assert not a.release("a")  # not a's claim to release
    assert b.release("a")
    assert [v.instance for v in b.view(T0 + TTL + 2)] == ["b"]


def test_every_registry_key_has_a_ttl(
    redis_client: redis.Redis, prefix: str, pair: tuple[Lease, Lease]
) -> None:
    for key in registry_keys(Keys(prefix)):
        if redis_client.exists(key):
            assert redis_client.ttl(key) > 0, key


def test_ids_with_separators_and_braces_stay_in_one_slot(
    redis_client: redis.Redis, prefix: str
) -> None:
    odd = lease(redis_client, prefix, "id}{with:odd|chars")
    assert odd.acquire(T0) == ""
    assert odd.renew(T0 + 1)
    slots = {key_slot(k.encode()) for k in registry_keys(Keys(prefix))}
    assert len(slots) == 1


@pytest.mark.parametrize(
    ("blob", "expected"),
    [
        (None, [("dead", "d/+")]),
        (b"not json", [("dead", "d/+")]),
        (b'{"sessions": "x"}', [("dead", "d/+")]),
        (b'{"sessions": [{"clientId": 3, "topic": "a"}]}', [("dead", "d/+")]),
        (
            orjson.dumps(
                {"sessions": [{"clientId": "x", "topic": "a"}, {"clientId": "", "topic": "b"}]}
            ),
            [("x", "a")],
        ),
        (
            orjson.dumps(
                {
                    "sessions": [
                        {"clientId": "x", "topic": "a"},
                        {"clientId": "x-critical", "topic": "c"},
                    ]
                }
            ),
            [("x", "a"), ("x-critical", "c")],
        ),
    ],
)
def test_sessions_from_a_description(blob: bytes | None, expected: list[tuple[str, str]]) -> None:
    assert sessions_from(blob, "dead", "d/+") == expected


def test_registry_view_reads_both_reply_shapes() -> None:
    now = 100.0
    resp2 = registry_view([(b"a", 90.0), (b"b", 130.0)], {b"a": b"b"}, {b"b": b'{"pid": 7}'}, now)
    resp3 = registry_view([[b"a", 90.0], [b"b", 130.0]], {b"a": b"b"}, {b"b": b'{"pid": 7}'}, now)
    assert resp2 == resp3
    docs = [v.to_doc(now) for v in resp2]
    assert [(d["instance"], d["state"], d["claimedBy"]) for d in docs] == [
        ("a", "adopting", "b"),
        ("b", "live", None),
    ]
    assert docs[1]["pid"] == 7


def test_move_index_keeps_members_and_scores(redis_client: redis.Redis, prefix: str) -> None:
    source, target = f"{prefix}:{{p:dead}}:pending", f"{prefix}:{{p:me}}:pending"
    redis_client.zadd(source, {f"k{i}": float(i) for i in range(1234)})
    redis_client.zadd(target, {"k5": 1.0, "mine": 7.0})
    assert move_index(redis_client, source, target, "NX") == 1234
    assert not redis_client.exists(source)
    assert redis_client.zcard(target) == 1235
    assert redis_client.zscore(target, "k5") == 1.0  # NX: the target's own entry is kept
    assert redis_client.zscore(target, "k1000") == 1000.0


def test_an_adoption_stops_where_a_session_could_not_be_drained(
    redis_client: redis.Redis, prefix: str
) -> None:
    keys = Keys(prefix)
    redis_client.zadd(keys.pending("dead"), {"k": 1.0})
    steps: list[str] = []

    def drain(client_id: str, _topic: str) -> bool:
        steps.append(client_id)
        return client_id == "dead"  # the critical session's broker is away

    def queue(_key: str) -> int:
        steps.append("queue")
        return 0

    def sweep_dead(_instance: str) -> Counter[str]:
        steps.append("sweep")
        return Counter()

    result = adopt(
        "dead",
        client=redis_client,
        keys=keys,
        me="me",
        sessions=[("dead", "t/+"), ("dead-critical", "c/+")],
        drain_session=drain,
        adopt_queue=queue,
        sweep_dead=sweep_dead,
    )
    assert result is None
    assert steps == ["dead", "dead-critical"]  # nothing else moved: tried again later
    assert redis_client.zcard(keys.pending("dead")) == 1
