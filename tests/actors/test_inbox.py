"""The critical lane's inbox: critical work goes first, each sensor's messages keep their order."""

from __future__ import annotations

import threading
from typing import Any

import pykka
from hypothesis import given
from hypothesis import strategies as st
from pykka._envelope import Envelope

from tests.conftest import plain_alert
from tripline.actors._inbox import UrgentFirst, sensors, urgent, urgent_first_inbox
from tripline.messages import (
    AlertBatch,
    Ping,
    Priority,
    Reason,
    SensorResolved,
    TaskIntent,
    WorkBatch,
)


def batch(*sensors_: str, critical: bool = False) -> AlertBatch:
    priority = Priority.CRITICAL if critical else Priority.NORMAL
    return AlertBatch(
        alerts=tuple(plain_alert(f"K-{s}", sensor_id=s, priority=priority) for s in sensors_)
    )


def resolved(sensor: str) -> SensorResolved:
    return SensorResolved(sensor_id=sensor, idempotency_key="R", timestamp=0.0, customer_id="C")


def drain(messages: list[Any]) -> list[Any]:
    inbox = UrgentFirst()
    for message in messages:
        inbox.put(Envelope(message))
    out = []
    while not inbox.empty():
        out.append(inbox.get().message)
    return out


def test_critical_work_overtakes_what_waits_for_other_sensors() -> None:
    a, b, co = batch("A"), batch("B"), batch("CO", critical=True)
    ping = Ping()
    assert drain([a, b, ping, co]) == [co, a, b, ping]


def test_critical_work_waits_behind_a_message_about_one_of_its_sensors() -> None:
    a, res_b = batch("A"), resolved("B")
    co_b, co_c = batch("B", "X", critical=True), batch("C", critical=True)
    # co_b stays behind B's resolve; co_c, about other sensors, still goes first.
    assert drain([a, res_b, co_b, co_c]) == [co_c, a, res_b, co_b]


def test_once_the_message_about_its_sensor_is_taken_critical_work_overtakes_again() -> None:
    inbox = UrgentFirst()
    first, later = batch("B"), batch("C")
    inbox.put(Envelope(first))
    assert inbox.get().message is first
    inbox.put(Envelope(later))
    co = batch("B", critical=True)
    inbox.put(Envelope(co))
    assert [inbox.get().message, inbox.get().message] == [co, later]


def test_what_makes_a_message_urgent_and_whose_sensors_it_carries() -> None:
    crit = plain_alert("K", sensor_id="S1", priority=Priority.CRITICAL)
    normal = plain_alert("N", sensor_id="S2", priority=Priority.HIGH)
    task = TaskIntent(alert=crit, reason=Reason.DO_NOT_CALL, due=0.0)
    assert urgent(WorkBatch(works=(TaskIntent(alert=normal, reason=Reason.NONE, due=0.0), task)))
    assert not urgent(WorkBatch(works=(TaskIntent(alert=normal, reason=Reason.NONE, due=0.0),)))
    assert urgent(batch("A", critical=True))
    assert not urgent(batch("A"))
    assert not urgent(resolved("S1"))
    assert sensors(task) == {"S1"}  # an `alert` attribute
    assert sensors(resolved("S9")) == {"S9"}  # a `sensor_id` attribute
    assert sensors(Ping()) == frozenset()


def test_an_actor_with_the_inbox_takes_critical_work_first() -> None:
    seen: list[str] = []
    busy, release = threading.Event(), threading.Event()

    class Recorder(pykka.ThreadingActor):
        _create_actor_inbox = staticmethod(urgent_first_inbox)

        def on_receive(self, message: Any) -> Any:
            if isinstance(message, AlertBatch):
                seen.append(message.alerts[0].sensor_id)
            elif message == "hold":
                busy.set()
                release.wait(10)  # busy with something else while the others arrive
            return None

    ref = Recorder.start()
    try:
        ref.tell("hold")
        assert busy.wait(10)
        for message in (batch("A"), batch("B"), batch("CO", critical=True)):
            ref.tell(message)
        release.set()
        ref.ask(Ping())
    finally:
        ref.stop()
    assert seen == ["CO", "A", "B"]


@given(
    st.lists(
        st.tuples(st.sampled_from("ABCDE"), st.booleans(), st.booleans()), min_size=1, max_size=40
    )
)
def test_every_message_comes_out_once_and_each_sensors_stay_in_order(
    plan: list[tuple[str, bool, bool]],
) -> None:
    messages: list[Any] = [
        resolved(sensor) if is_resolve else batch(sensor, critical=critical)
        for sensor, critical, is_resolve in plan
    ]
    out = drain(messages)
    assert sorted(map(id, out)) == sorted(map(id, messages))
    for sensor in "ABCDE":
        about = [m for m in messages if sensor in sensors(m)]
        assert [m for m in out if sensor in sensors(m)] == about
    # Put all before any is taken: the lane holds each urgent message that no earlier message
    # in the other queue shares a sensor with; it comes out first, each queue in its order.
    lane: list[Any] = []
    rest: list[Any] = []
    held: set[str] = set()
    for message in messages:
        if urgent(message) and not sensors(message) & held:
            lane.append(message)
        else:
            rest.append(message)
            held |= sensors(message)
    assert list(map(id, out)) == list(map(id, lane + rest))
