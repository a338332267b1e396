"""The resume sweep: what it re-routes, what it leaves to the actors still holding it."""

from __future__ import annotations

import time

import redis

from messages import Alert, Outcome, State
from tests.actors.helpers import accept
from tests.conftest import alert
from tripline.resume import SweepRules, sweep
from tripline.store import TRANSITION_LUA, Keys, transition_args


def move(client: redis.Redis, keys: Keys, key: str, state: str) -> None:
    script = client.register_script(TRANSITION_LUA)
    k, a = transition_args(keys, key, state=state, now=time.time())
    assert script(keys=k, args=a) == 1


def run(
    client: redis.Redis, keys: Keys, *, in_flight: bool
) -> tuple[dict[str, int], list[Alert], list[str]]:
    routed: list[Alert] = []
    settled: list[str] = []
    counts = sweep(
        client,
        keys,
        instance="default",
        now=time.time() + 60,  # every alert is past the grace
        rules=SweepRules(accepted_grace=30.0),
        route=routed.extend,
        defer=lambda _task: None,
        in_flight=lambda _key, _age: in_flight,
        settled=settled.extend,
    )
    return dict(counts), routed, settled


def test_alerts_still_moving_through_the_actors_are_left_alone(
    redis_client: redis.Redis, prefix: str
) -> None:
    keys = Keys(prefix)
    waiting, queued, done = accept(redis_client, keys, alert(), alert(), alert())
    move(redis_client, keys, queued.idempotency_key, State.QUEUED)
    move(redis_client, keys, done.idempotency_key, Outcome.SUPPRESSED)

    counts, routed, settled = run(redis_client, keys, in_flight=True)
    assert routed == []
    assert counts == {"in flight": 1, "waiting": 1, "done": 1}
    assert sorted(settled) == sorted([queued.idempotency_key, done.idempotency_key])

    counts, routed, _ = run(redis_client, keys, in_flight=False)
    assert [a.idempotency_key for a in routed] == [waiting.idempotency_key]
    assert counts["re-routed"] == 1
