"""Records live as long as their obligations: a task's due time, then the record TTL."""

from __future__ import annotations

import time
from dataclasses import replace

from tests.actors.helpers import FakeBackend
from tests.actors.test_dialer import Rig, settled
from tests.conftest import alert, wait_for
from tripline.messages import Alert, Reason, TaskIntent
from tripline.pipeline.lifetime import ACCEPT_SLACK

TTL = 3600
DAY = 86400


def ttls(rig: Rig, a: Alert) -> dict[str, int]:
    keys = rig.keys
    names = {
        "record": keys.record(a.idempotency_key),
        "history": keys.history(a.idempotency_key),
        "context": keys.context(a.reference_id),
        "readings": keys.readings(a.customer_id, a.sensor_id),
    }
    return {what: int(rig.client.ttl(key)) for what, key in names.items()}


def readings_of(rig: Rig, a: Alert) -> None:
    """The sensor's readings, as a shard keeps them (the agent's page charts them)."""
    key = rig.keys.readings(a.customer_id, a.sensor_id)
    rig.client.lpush(key, b"{}")
    rig.client.expire(key, TTL)


def test_a_deferral_due_days_later_keeps_its_record_context_and_readings_past_it(
    rig: Rig,
) -> None:
    """A Friday-evening deferral due Monday 09:00 is still readable on Monday."""
    backend = FakeBackend()
    dialer = rig.start(backend, record_ttl=TTL)
    (a,) = rig.accept(alert())  # recorded with the record TTL, as the doors do
    readings_of(rig, a)
    due = time.time() + 3 * DAY
    dialer.tell(TaskIntent(alert=a, reason=Reason.DO_NOT_DISTURB, due=due, detail="x"))
    rig.wait(a, "taskId")
    wait_for(lambda: settled(dialer))
    floor = 3 * DAY + TTL - 60  # a minute for the test's own pace
    assert all(ttl >= floor for ttl in ttls(rig, a).values()), ttls(rig, a)
    assert all(ttl <= 3 * DAY + TTL + 1 for ttl in ttls(rig, a).values()), ttls(rig, a)


def test_a_task_due_now_lives_the_record_ttl_from_now_and_never_less_than_kept(
    rig: Rig, batches: list[list[str]]
) -> None:
    backend = FakeBackend()
    dialer = rig.start(backend, record_ttl=TTL)
    fresh, old, kept = rig.accept(alert(), alert(), alert())
    old = replace(old, accepted_at=time.time() - 2 * TTL)  # re-routed long after acceptance
    rig.client.expire(rig.keys.record(old.idempotency_key), 60)  # its TTL nearly run out
    rig.client.expire(rig.keys.record(kept.idempotency_key), 10 * DAY)  # kept longer already
    kept = replace(kept, accepted_at=old.accepted_at)
    for x in (fresh, old, kept):
        dialer.tell(TaskIntent(alert=x, reason=Reason.FLEET_INCIDENT, due=time.time(), detail="x"))
        rig.wait(x, "taskId")
    wait_for(lambda: settled(dialer))
    assert TTL - 60 <= rig.client.ttl(rig.keys.record(old.idempotency_key)) <= TTL
    assert rig.client.ttl(rig.keys.record(kept.idempotency_key)) > 10 * DAY - 60  # not shortened
    # Due within minutes of acceptance: acceptance gave it the record TTL and a slack past it.
    assert TTL <= rig.client.ttl(rig.keys.record(fresh.idempotency_key)) <= TTL + ACCEPT_SLACK
    assert sum(batch.count("EXPIRE") for batch in batches) == 2 * 5  # old's and kept's only
