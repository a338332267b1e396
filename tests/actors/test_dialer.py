"""The dialer: priority order, 429 pauses, unsent retries, and no resend after ambiguity."""

from __future__ import annotations

import threading
from typing import Any

import pykka
import redis

from actors._dial_jobs import Backends
from actors.dialer import Dialer
from conf.schema import DialerConfig
from messages import Drain, Priority, StatusQuery
from pipeline.calling_window import CallingRules, DayRule
from pipeline.comply import ComplyRules
from pipeline.dial import Answer
from tests.actors.helpers import FakeBackend, accept, intent
from tests.conftest import REDIS_URL, alert, ask, text, wait_for
from tripline.backends import Result
from tripline.stats import Stats
from tripline.store import Keys

ALWAYS = ComplyRules(
    calling=CallingRules(default=DayRule(weekdays=(0, 1440), saturday=(0, 1440), sunday=(0, 1440)))
)


def start_dialer(
    backend: FakeBackend,
    keys: Keys,
    observer: Any = None,
    **conf: Any,
) -> pykka.ActorRef[Any]:
    settings = {
        "backoff_base_seconds": 0.01,
        "backoff_max_seconds": 0.05,
        "max_age_seconds": {},
        **conf,
    }
    return Dialer.start(
        conf=DialerConfig(**settings),
        backends=lambda _take: Backends.uniform(backend, observer),
        client=redis.Redis.from_url(REDIS_URL),
        instance=f"test-{keys.prefix}",
        redis_url=REDIS_URL,
        keys=keys,
        routing={"critical": 10, "high": 7, "normal": 5, "low": 2},
        rules=ALWAYS,
        stats=Stats(),
    )


def record(client: redis.Redis, keys: Keys, key: str) -> dict[str, str]:
    return {text(k): text(v) for k, v in client.hgetall(keys.record(key)).items()}


def settled(dialer: pykka.ActorRef[Any]) -> bool:
    return bool(ask(dialer, Drain()) == 0)


def test_called_once_and_recorded(redis_client: redis.Redis, prefix: str) -> None:
    keys = Keys(prefix)
    backend = FakeBackend(Result(Answer.DONE, ref="conv-1"))
    dialer = start_dialer(backend, keys)
    (a,) = accept(redis_client, keys, alert())
    dialer.tell(intent(a))
    wait_for(lambda: record(redis_client, keys, a.idempotency_key).get("outcome") == "called")
    assert record(redis_client, keys, a.idempotency_key)["callId"] == "conv-1"
    assert len(backend.dials) == 1


def test_same_intent_twice_dials_once(redis_client: redis.Redis, prefix: str) -> None:
    keys = Keys(prefix)
    backend = FakeBackend()
    dialer = start_dialer(backend, keys)
    (a,) = accept(redis_client, keys, alert())
    dialer.tell(intent(a))
    dialer.tell(intent(a))
    wait_for(lambda: settled(dialer))
    assert len(backend.dials) == 1


def test_ambiguous_answer_is_never_resent_and_becomes_a_task(
    redis_client: redis.Redis, prefix: str
) -> None:
    keys = Keys(prefix)
    backend = FakeBackend(Result(Answer.UNCERTAIN, detail="read timeout"))
    dialer = start_dialer(backend, keys)
    (a,) = accept(redis_client, keys, alert())
    dialer.tell(intent(a))
    wait_for(lambda: record(redis_client, keys, a.idempotency_key).get("taskId"))
    rec = record(redis_client, keys, a.idempotency_key)
    assert (rec["outcome"], rec["reason"]) == ("deferred", "dial_uncertain")
    assert len(backend.dials) == 1
    assert len(backend.tasks) == 1


def test_unsent_failures_are_retried_then_called(redis_client: redis.Redis, prefix: str) -> None:
    keys = Keys(prefix)
    backend = FakeBackend(Result(Answer.UNSENT), Result(Answer.UNSENT), Result(Answer.DONE, "c"))
    dialer = start_dialer(backend, keys)
    (a,) = accept(redis_client, keys, alert())
    dialer.tell(intent(a))
    wait_for(lambda: record(redis_client, keys, a.idempotency_key).get("outcome") == "called")
    assert len(backend.dials) == 3


def test_permanent_failure_is_dial_failed_with_a_task(
    redis_client: redis.Redis, prefix: str
) -> None:
    keys = Keys(prefix)
    backend = FakeBackend(Result(Answer.FAILED, detail="HTTP 400: bad number"))
    dialer = start_dialer(backend, keys)
    (a,) = accept(redis_client, keys, alert())
    dialer.tell(intent(a))
    wait_for(lambda: record(redis_client, keys, a.idempotency_key).get("taskId"))
    assert record(redis_client, keys, a.idempotency_key)["reason"] == "dial_failed"


def test_429_pauses_then_resends(redis_client: redis.Redis, prefix: str) -> None:
    keys = Keys(prefix)
    backend = FakeBackend(Result(Answer.RATE_LIMITED, retry_after="1"))
    dialer = start_dialer(backend, keys)
    (a,) = accept(redis_client, keys, alert())
    dialer.tell(intent(a))
    wait_for(lambda: ask(dialer, StatusQuery())["pausedUntil"])
    wait_for(lambda: record(redis_client, keys, a.idempotency_key).get("outcome") == "called")
    assert len(backend.dials) == 2


def test_critical_has_its_own_slot_and_the_rest_go_by_priority(
    redis_client: redis.Redis, prefix: str
) -> None:
    keys = Keys(prefix)
    gate = threading.Event()
    backend = FakeBackend(gate=gate)
    dialer = start_dialer(backend, keys, max_concurrency=1, critical_concurrency=1)
    first, low, normal, critical = accept(redis_client, keys, *[alert() for _ in range(4)])
    dialer.tell(intent(first, Priority.NORMAL))
    wait_for(lambda: len(backend.dials) == 1)
    for a, p in ((low, Priority.LOW), (normal, Priority.NORMAL), (critical, Priority.CRITICAL)):
        dialer.tell(intent(a, p))
    # The normal slot is busy: critical goes anyway, on its own slot.
    wait_for(lambda: len(backend.dials) == 2)
    assert backend.dials[1].priority == Priority.CRITICAL
    depth = ask(dialer, StatusQuery())["queueDepth"]
    assert depth == {"critical": 0, "high": 0, "normal": 1, "low": 1}
    gate.set()
    wait_for(lambda: settled(dialer))
    assert [d.priority for d in backend.dials[2:]] == [Priority.NORMAL, Priority.LOW]


def test_work_older_than_its_max_age_becomes_a_stale_task(
    redis_client: redis.Redis, prefix: str
) -> None:
    keys = Keys(prefix)
    gate = threading.Event()
    backend = FakeBackend(gate=gate)
    dialer = start_dialer(backend, keys, max_concurrency=1, max_age_seconds={"low": 1})
    first, old = accept(redis_client, keys, alert(), alert())
    dialer.tell(intent(first, Priority.NORMAL))
    wait_for(lambda: len(backend.dials) == 1)
    dialer.tell(intent(old, Priority.LOW))  # waits behind the busy slot, then goes stale
    wait_for(lambda: record(redis_client, keys, old.idempotency_key).get("taskId"), timeout=5)
    rec = record(redis_client, keys, old.idempotency_key)
    assert (rec["outcome"], rec["reason"]) == ("deferred", "stale")
    gate.set()
    wait_for(lambda: settled(dialer))
    assert len(backend.dials) == 1


def test_queued_work_survives_a_dialer_restart(redis_client: redis.Redis, prefix: str) -> None:
    keys = Keys(prefix)
    held = FakeBackend()
    # Occupancy unknown (an observer that never reports): normal work waits in the queue.
    first = start_dialer(held, keys, observer=object(), occupancy_source="genesys")
    (a,) = accept(redis_client, keys, alert())
    first.tell(intent(a, Priority.NORMAL))
    wait_for(lambda: record(redis_client, keys, a.idempotency_key).get("state") == "queued")
    first.stop()
    assert held.dials == []

    backend = FakeBackend()
    start_dialer(backend, keys)  # no observer: ungoverned, dials what it restored
    wait_for(lambda: record(redis_client, keys, a.idempotency_key).get("outcome") == "called")
    assert [d.intent_id for d in backend.dials] == [a.idempotency_key]
