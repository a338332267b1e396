"""The resume sweep: what it re-routes, what it leaves to the actors still holding it."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import redis

from tests.actors.helpers import accept
from tests.conftest import alert
from tripline.adapters.store import TRANSITION_LUA, Keys, text, transition_args
from tripline.messages import Alert, Outcome, Reason, State, TaskIntent
from tripline.service.resume import _BATCH, SweepRules, sweep


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


def test_each_state_gets_its_treatment_and_only_decided_ones_leave_the_index(
    redis_client: redis.Redis, prefix: str
) -> None:
    keys = Keys(prefix)
    lost, queued, dialing, called = accept(redis_client, keys, *[alert() for _ in range(4)])
    move(redis_client, keys, queued.idempotency_key, State.QUEUED)
    for each in (dialing, called):
        move(redis_client, keys, each.idempotency_key, State.QUEUED)
        move(redis_client, keys, each.idempotency_key, State.DIALING)
    move(redis_client, keys, called.idempotency_key, Outcome.CALLED)
    routed: list[Alert] = []
    tasks: list[TaskIntent] = []

    def sweep_at(now: float) -> dict[str, int]:
        return dict(
            sweep(
                redis_client,
                keys,
                instance="default",
                now=now,
                rules=SweepRules(accepted_grace=30.0, dialing_grace=600.0),
                route=routed.extend,
                defer=tasks.append,
            )
        )

    assert sweep_at(time.time() + 60) == {"re-routed": 1, "waiting": 2, "done": 1}
    assert [a.idempotency_key for a in routed] == [lost.idempotency_key]
    assert tasks == []
    assert sweep_at(time.time() + 700) == {"re-routed": 1, "waiting": 1, "uncertain": 1}
    assert [(t.alert.idempotency_key, t.reason) for t in tasks] == [
        (dialing.idempotency_key, Reason.DIAL_UNCERTAIN)
    ]
    left = {text(m) for m in redis_client.zrange(keys.pending("default"), 0, -1)}
    assert left == {lost.idempotency_key, queued.idempotency_key, dialing.idempotency_key}


def test_a_long_index_is_swept_in_pages_each_timed_for_the_pause_after_it(
    redis_client: redis.Redis, prefix: str
) -> None:
    keys = Keys(prefix)
    # Accepted together, so all share one score: a page boundary splits them (an exclusive
    # score cursor skipped all but the first page of such a batch).
    accepted = accept(redis_client, keys, *(alert() for _ in range(_BATCH * 2 + 1)))
    for done in accepted:
        move(redis_client, keys, done.idempotency_key, Outcome.SUPPRESSED)
    took: list[float] = []
    counts = sweep(
        redis_client,
        keys,
        instance="default",
        now=time.time() + 60,
        rules=SweepRules(accepted_grace=30.0),
        route=lambda _alerts: None,
        defer=lambda _task: None,
        between_pages=took.append,
    )
    assert counts == {"done": _BATCH * 2 + 1}
    assert len(took) == 1  # after the full first page; none after the last
    assert 0 < took[0] < 5
    assert redis_client.zcard(keys.pending("default")) == 0


def test_entries_left_in_the_index_are_counted_once_per_pass(
    redis_client: redis.Redis, prefix: str
) -> None:
    keys = Keys(prefix)
    accept(redis_client, keys, *(alert() for _ in range(_BATCH + _BATCH // 2)))
    counts, routed, _ = run(redis_client, keys, in_flight=True)  # one score, two pages
    assert counts == {"in flight": _BATCH + _BATCH // 2}
    assert routed == []


def sweep_past_the_grace(
    client: redis.Redis, keys: Keys, *, rules: SweepRules, **hands: Any
) -> Counter[str]:
    """One sweep of the default instance's index, a minute on: every alert past its grace."""
    return sweep(client, keys, instance="default", now=time.time() + 60, rules=rules, **hands)


def test_an_alert_rerouted_past_the_limit_goes_to_a_person_and_the_dead_letter(
    redis_client: redis.Redis, prefix: str
) -> None:
    keys = Keys(prefix)
    (poison,) = accept(redis_client, keys, alert())
    deferred: list[TaskIntent] = []
    quarantined: list[tuple[str, str, bytes]] = []

    def once() -> tuple[dict[str, int], list[Alert]]:
        routed: list[Alert] = []
        counts = sweep_past_the_grace(
            redis_client,
            keys,
            rules=SweepRules(accepted_grace=30.0, reroute_limit=3),
            route=routed.extend,
            defer=deferred.append,
            quarantine=lambda *entry: quarantined.append(entry),
        )
        return dict(counts), routed

    # Routed three times, and each time the actors died with it: the fourth is not a round.
    for _ in range(3):
        counts, routed = once()
        assert [a.idempotency_key for a in routed] == [poison.idempotency_key]
    counts, routed = once()
    assert routed == []
    assert counts == {"quarantined": 1}
    (task,) = deferred
    assert (task.alert.idempotency_key, task.reason) == (
        poison.idempotency_key,
        Reason.INTERNAL_ERROR,
    )
    ((key, error, blob),) = quarantined
    assert key == poison.idempotency_key
    assert "re-routed 3 times" in error
    assert blob  # the stored alert, for a person to read


def test_the_sweep_at_start_does_not_count_its_reroutes(
    redis_client: redis.Redis, prefix: str
) -> None:
    keys = Keys(prefix)
    (alert_,) = accept(redis_client, keys, alert())
    for _ in range(5):  # five restarts in a row: each re-routes what the last one left
        _, routed, _ = run(redis_client, keys, in_flight=False)
        assert [a.idempotency_key for a in routed] == [alert_.idempotency_key]
    assert redis_client.hget(keys.record(alert_.idempotency_key), "reroutes") is None


def test_unreadable_records_are_quarantined_and_the_rest_of_the_page_goes_on(
    redis_client: redis.Redis, prefix: str
) -> None:
    keys = Keys(prefix)
    wrong_type, bad_blob, good = accept(redis_client, keys, alert(), alert(), alert())
    redis_client.delete(keys.record(wrong_type.idempotency_key))
    redis_client.rpush(keys.record(wrong_type.idempotency_key), "not a record")
    redis_client.hset(keys.record(bad_blob.idempotency_key), "alert", b"{not json")
    quarantined: list[str] = []
    routed: list[Alert] = []
    counts = sweep_past_the_grace(
        redis_client,
        keys,
        rules=SweepRules(accepted_grace=30.0),
        route=routed.extend,
        defer=lambda _task: None,
        quarantine=lambda key, _error, _blob: quarantined.append(key),
    )
    assert [a.idempotency_key for a in routed] == [good.idempotency_key]
    assert sorted(quarantined) == sorted([wrong_type.idempotency_key, bad_blob.idempotency_key])
    assert counts["quarantined"] == 2
    # Out of the index: the next sweep does not meet them again.
    left = {text(m) for m in redis_client.zrange(keys.pending("default"), 0, -1)}
    assert left == {good.idempotency_key}
