"""The dialer's queue as a plain object: order, counts, indexes, admission, aging, staleness."""

from __future__ import annotations

import dataclasses
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tripline.messages import Alert, Customer, DialIntent, Outcome, Priority, Reason, TaskIntent
from tripline.pipeline.dial_queue import Conditions, Deferral, DialQueue, RecentResolves, StoredTask
from tripline.pipeline.govern import GovernRules, Occupancy

NOW = 1_000_000.0
RULES = GovernRules(aging_seconds=300.0, max_age={Priority.NORMAL: 600.0})
QUIET = Occupancy(0.1, 0, NOW)  # occupancy that holds nothing


def alert(key: str, *, sensor: str = "S-1", at: float = NOW) -> Alert:
    return Alert(
        idempotency_key=key,
        sensor_id=sensor,
        customer_id="C-1",
        alert_type="temp_high",
        timestamp=at,
        firing=True,
        severity="",
        current_value=1.0,
        threshold=0.5,
        unit="c",
        reference_id=f"ref-{key}",
        telemetry_hash="h",
        accepted_at=at,
    )


def call(
    key: str, priority: Priority, *, sensor: str = "S-1", not_before: float = 0.0
) -> DialIntent:
    return DialIntent(
        intent_id=key,
        alert=alert(key, sensor=sensor),
        customer=Customer(
            customer_id="C-1",
            name="n",
            phone="+12015550100",
            timezone="UTC",
            do_not_disturb=False,
            do_not_call=False,
        ),
        priority=priority,
        enqueued_at=NOW,
        not_before=not_before,
    )


def task(key: str, priority: Priority) -> TaskIntent:
    return TaskIntent(
        alert=replace(alert(key), priority=priority), reason=Reason.NO_CONTACT, due=NOW, detail="x"
    )


def conditions(**changes: object) -> Conditions:
    fields: dict[str, object] = {
        "rules": RULES,
        "occupancy": QUIET,
        "incident": None,
        "paused": False,
        "in_flight": {True: 0, False: 0},
        "caps": {True: 2, False: 4},
        "batching": lambda _priority: False,
    }
    fields.update(changes)
    return Conditions(**fields)  # type: ignore[arg-type]


def test_work_leaves_its_priority_in_arrival_order_and_a_front_entry_first() -> None:
    queue = DialQueue()
    for key in ("a", "b"):
        queue.add(call(key, Priority.HIGH), at=NOW)
    queue.add(call("again", Priority.HIGH), at=NOW, front=True)
    assert [queue.pop(Priority.HIGH).work.intent_id for _ in range(3)] == ["again", "a", "b"]  # type: ignore[union-attr]
    assert not queue


def test_a_task_is_held_by_reference_and_counted_but_not_as_a_call() -> None:
    queue = DialQueue()
    queue.add(task("t", Priority.LOW), at=NOW)
    assert queue.pop(Priority.LOW).work == StoredTask("t", Priority.LOW, Outcome.DEFERRED)
    suppressed = replace(task("s", Priority.LOW), outcome=Outcome.SUPPRESSED)
    queue.add(suppressed, at=NOW)  # its claim needs the outcome it is raised for
    assert queue.pop(Priority.LOW).work == StoredTask("s", Priority.LOW, Outcome.SUPPRESSED)
    queue.add(task("t2", Priority.LOW), at=NOW)
    assert (queue.live[Priority.LOW], queue.calls_waiting, len(queue)) == (1, 0, 1)


def test_counts_follow_add_cancel_and_pop_once_each() -> None:
    queue = DialQueue()
    queue.add(call("a", Priority.NORMAL), at=NOW)
    queue.add(call("b", Priority.NORMAL, not_before=NOW + 15), at=NOW)
    assert (queue.live[Priority.NORMAL], queue.calls_waiting, queue.delayed) == (2, 2, 1)
    queue.withdraw("b")
    queue.withdraw("b")  # twice: counted once
    assert (queue.live[Priority.NORMAL], queue.calls_waiting, queue.delayed) == (1, 1, 0)
    assert len(queue) == 2  # the cancelled entry waits to be skipped at the head
    assert queue.pop(Priority.NORMAL).work.intent_id == "a"  # type: ignore[union-attr]
    assert (queue.live[Priority.NORMAL], queue.calls_waiting) == (0, 0)


def test_a_delay_stops_counting_when_it_ends_and_not_before() -> None:
    queue = DialQueue()
    queue.add(call("a", Priority.HIGH, not_before=NOW + 5), at=NOW)
    queue.end_delays(NOW + 4.999)
    assert queue.delayed == 1
    queue.end_delays(NOW + 5)
    assert queue.delayed == 0


def test_a_resolve_finds_only_the_sensors_non_critical_calls_and_not_anchored_ones() -> None:
    queue = DialQueue()
    queue.add(call("n", Priority.NORMAL, sensor="S-1"), at=NOW)
    queue.add(call("c", Priority.CRITICAL, sensor="S-1"), at=NOW)
    queue.add(call("other", Priority.NORMAL, sensor="S-2"), at=NOW)
    queue.anchor("kept")
    queue.add(call("kept", Priority.NORMAL, sensor="S-1"), at=NOW)
    assert [e.work.intent_id for e in queue.calls_of("S-1")] == ["n"]  # type: ignore[union-attr]
    queue.cancel(queue.calls_of("S-1")[0])
    assert queue.calls_of("S-1") == []


@pytest.mark.parametrize(("attempt", "found"), [(1, False), (2, True), (3, True)])
def test_a_resolve_finds_a_critical_re_attempt_but_never_a_critical_first_call(
    attempt: int, found: bool
) -> None:
    queue = DialQueue()
    queue.add(replace(call("c", Priority.CRITICAL, sensor="S-1"), attempt=attempt), at=NOW)
    assert [e.work.intent_id for e in queue.calls_of("S-1")] == (["c"] if found else [])  # type: ignore[union-attr]


def test_waiting_calls_skip_a_priority_tasks_and_cancelled_entries() -> None:
    queue = DialQueue()
    queue.add(call("c", Priority.CRITICAL), at=NOW)
    queue.add(call("h", Priority.HIGH), at=NOW)
    queue.add(task("t", Priority.HIGH), at=NOW)
    queue.add(call("l", Priority.LOW), at=NOW)
    queue.withdraw("l")
    found = queue.waiting_calls(except_priority=Priority.CRITICAL)
    assert [e.work.intent_id for e in found] == ["h"]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("waited", "stale"),
    [(600.0, False), (600.001, True)],  # max_age 600 s: more than it is stale
)
def test_a_call_at_its_head_past_its_max_age_becomes_a_stale_deferral(
    waited: float, stale: bool
) -> None:
    queue = DialQueue()
    queue.add(call("old", Priority.NORMAL), at=NOW)
    queue.add(task("t", Priority.NORMAL), at=NOW)
    found = queue.expire_stale(NOW + waited, RULES)
    if stale:
        assert found == [
            Deferral(call("old", Priority.NORMAL), Reason.STALE, "waited 600s for the dialer")
        ]
        assert queue.live[Priority.NORMAL] == 1  # the task stays: a task is never stale
    else:
        assert found == []


def test_a_pending_delay_counts_toward_staleness_from_its_end() -> None:
    queue = DialQueue()
    queue.add(call("late", Priority.NORMAL, not_before=NOW + 100), at=NOW)
    assert queue.expire_stale(NOW + 650, RULES) == []  # 550 s past its delay
    assert len(queue.expire_stale(NOW + 700.5, RULES)) == 1


def _chosen(queue: DialQueue, now: float = NOW, **changes: object) -> Priority | None:
    return queue.choose(now, conditions(**changes)).priority


def test_the_most_urgent_head_goes_first() -> None:
    queue = DialQueue()
    queue.add(call("low", Priority.LOW), at=NOW)
    queue.add(call("crit", Priority.CRITICAL), at=NOW)
    queue.add(call("high", Priority.HIGH), at=NOW)
    assert _chosen(queue) == Priority.CRITICAL


@pytest.mark.parametrize(
    ("waited", "expected"),
    [
        # rank = priority - waited / 300: LOW (3) waiting 599 s ranks 1.003 > HIGH (1) fresh...
        (599.0, Priority.HIGH),
        # ...but 601 s lifts it past HIGH (0.997 < 1): a seconds' wait counts, not a multiple.
        (601.0, Priority.LOW),
    ],
)
def test_waiting_lifts_work_one_level_per_aging_interval(waited: float, expected: Priority) -> None:
    queue = DialQueue()
    queue.add(call("low", Priority.LOW), at=NOW - waited)
    queue.add(call("high", Priority.HIGH), at=NOW)
    assert _chosen(queue) == expected


def test_a_paused_dialer_lets_tasks_go_but_no_call() -> None:
    queue = DialQueue()
    queue.add(call("crit", Priority.CRITICAL), at=NOW)
    assert _chosen(queue, paused=True) is None
    queue.add(task("t", Priority.LOW), at=NOW)
    assert _chosen(queue, paused=True) == Priority.LOW


def test_a_call_in_its_pending_delay_waits_and_says_when_to_look_again() -> None:
    queue = DialQueue()
    queue.add(call("a", Priority.HIGH, not_before=NOW + 5), at=NOW)
    queue.add(call("b", Priority.NORMAL, not_before=NOW + 3), at=NOW)
    choice = queue.choose(NOW, conditions())
    assert (choice.priority, choice.wake_at) == (None, NOW + 3)
    assert _chosen(queue, NOW + 5) == Priority.HIGH


def test_concurrency_caps_hold_their_own_class_only_and_batches_ignore_them() -> None:
    queue = DialQueue()
    queue.add(call("crit", Priority.CRITICAL), at=NOW)
    queue.add(call("high", Priority.HIGH), at=NOW)
    assert _chosen(queue, in_flight={True: 2, False: 0}) == Priority.HIGH
    assert _chosen(queue, in_flight={True: 1, False: 4}) == Priority.CRITICAL
    assert _chosen(queue, in_flight={True: 2, False: 4}) is None
    batched = _chosen(queue, in_flight={True: 2, False: 4}, batching=lambda p: p == Priority.HIGH)
    assert batched == Priority.HIGH


@pytest.mark.parametrize(
    ("occupancy", "expected"),
    [
        (Occupancy(0.79, 0, NOW), Priority.NORMAL),  # below the threshold: everything goes
        (Occupancy(0.80, 0, NOW), Priority.HIGH),  # at it: normal and low wait, high goes
        (None, None),  # never observed: only critical would go
    ],
)
def test_occupancy_holds_lower_priorities(
    occupancy: Occupancy | None, expected: Priority | None
) -> None:
    queue = DialQueue()
    queue.add(call("normal", Priority.NORMAL), at=NOW - 700)  # aged: ranks first when admitted
    queue.add(call("high", Priority.HIGH), at=NOW)
    assert _chosen(queue, occupancy=occupancy) == expected


def test_a_saturated_queue_defers_low_calls_and_holds_the_rest() -> None:
    queue = DialQueue()
    queue.add(call("low", Priority.LOW), at=NOW)
    queue.add(call("normal", Priority.NORMAL), at=NOW)
    choice = queue.choose(NOW, conditions(occupancy=Occupancy(0.95, 0, NOW)))
    assert choice.priority is None
    assert [(d.call.intent_id, d.reason) for d in choice.deferrals] == [
        ("low", Reason.QUEUE_SATURATED)
    ]
    assert queue.live[Priority.LOW] == 0
    assert queue.live[Priority.NORMAL] == 1


def test_during_an_incident_non_critical_calls_leave_as_deferrals_and_critical_goes() -> None:
    queue = DialQueue()
    queue.add(call("high", Priority.HIGH), at=NOW)
    queue.add(task("t", Priority.HIGH), at=NOW)
    queue.add(call("crit", Priority.CRITICAL), at=NOW)
    choice = queue.choose(NOW, conditions(incident="fleet incident"))
    assert choice.priority == Priority.CRITICAL
    assert choice.deferrals == [
        Deferral(call("high", Priority.HIGH), Reason.FLEET_INCIDENT, "fleet incident")
    ]


@given(st.lists(st.tuples(st.sampled_from(list(Priority)), st.booleans()), max_size=30))
def test_live_counts_equal_what_is_waiting_whatever_is_added_and_cancelled(
    ops: list[tuple[Priority, bool]],
) -> None:
    queue = DialQueue()
    for n, (priority, cancel) in enumerate(ops):
        queue.add(call(f"k{n}", priority, sensor=f"S{n % 3}"), at=NOW)
        if cancel:
            queue.withdraw(f"k{n}")
    expected = {p: sum(1 for q, c in ops if q == p and not c) for p in Priority}
    assert queue.live == expected
    assert queue.calls_waiting == sum(expected.values())


def test_recent_resolves_clear_older_non_critical_calls_for_a_while() -> None:
    resolves = RecentResolves(kept_seconds=600.0, most=2)
    resolves.note("S-1", NOW, "res-1", now=NOW)
    older, newer = call("a", Priority.HIGH), call("b", Priority.HIGH)
    newer = replace(newer, alert=replace(newer.alert, timestamp=NOW + 1))
    assert resolves.cleared(older, NOW + 1) == "res-1"
    assert resolves.cleared(newer, NOW + 1) is None  # raised after the resolve
    assert resolves.cleared(call("c", Priority.CRITICAL), NOW + 1) is None  # never cancelled
    assert resolves.cleared(older, NOW + 600) is None  # forgotten after kept_seconds
    resolves.note("S-2", NOW, "res-2", now=NOW)
    resolves.note("S-3", NOW, "res-3", now=NOW)  # over `most`: the oldest goes
    assert resolves.cleared(older, NOW + 1) is None


# --- what mutation testing found unpinned (scripts/mutate dial_queue) ---------------------


def test_delays_count_each_call_and_not_a_call_due_exactly_now() -> None:
    queue = DialQueue()
    queue.add(call("a", Priority.HIGH, not_before=NOW + 5), at=NOW)
    queue.add(call("b", Priority.HIGH, not_before=NOW + 6), at=NOW)
    queue.add(call("now", Priority.HIGH, not_before=NOW), at=NOW)  # due at once: no delay
    assert queue.delayed == 2


def test_a_delay_counted_out_once_whichever_comes_first() -> None:
    # Its delay ended, then the call left: counted out once, never below zero.
    queue = DialQueue()
    queue.add(call("a", Priority.HIGH, not_before=NOW + 5), at=NOW)
    queue.end_delays(NOW + 5)
    queue.withdraw("a")
    assert queue.delayed == 0
    # The call left first, then its delay ended: the same.
    queue.add(call("b", Priority.HIGH, not_before=NOW + 5), at=NOW)
    queue.withdraw("b")
    queue.end_delays(NOW + 5)
    assert queue.delayed == 0


def test_a_call_without_a_delay_is_never_counted_as_delayed() -> None:
    queue = DialQueue()
    queue.add(call("a", Priority.HIGH), at=NOW)
    queue.pop(Priority.HIGH)
    assert queue.delayed == 0


def test_one_call_of_a_sensor_leaving_keeps_its_other_calls_findable() -> None:
    queue = DialQueue()
    queue.add(call("a", Priority.NORMAL, sensor="S-1"), at=NOW)
    queue.add(call("b", Priority.NORMAL, sensor="S-1"), at=NOW)
    queue.withdraw("a")
    assert [e.work.intent_id for e in queue.calls_of("S-1")] == ["b"]  # type: ignore[union-attr]


def test_every_head_of_an_incident_or_a_saturated_queue_leaves_not_only_the_first() -> None:
    queue = DialQueue()
    for key in ("h1", "h2"):
        queue.add(call(key, Priority.HIGH), at=NOW)
    choice = queue.choose(NOW, conditions(incident="fleet incident"))
    assert choice.priority is None  # the second high call is no more callable than the first
    assert [d.call.intent_id for d in choice.deferrals] == ["h1", "h2"]
    for key in ("l1", "l2"):
        queue.add(call(key, Priority.LOW), at=NOW)
    choice = queue.choose(NOW, conditions(occupancy=Occupancy(0.95, 0, NOW)))
    assert choice.priority is None
    assert [d.call.intent_id for d in choice.deferrals] == ["l1", "l2"]


def test_recent_resolves_keep_as_many_as_allowed() -> None:
    resolves = RecentResolves(kept_seconds=600.0, most=2)
    resolves.note("S-1", NOW, "res-1", now=NOW)
    resolves.note("S-2", NOW, "res-2", now=NOW)  # two of two: both kept
    assert resolves.cleared(call("a", Priority.HIGH, sensor="S-1"), NOW) == "res-1"
    assert resolves.cleared(call("b", Priority.HIGH, sensor="S-2"), NOW) == "res-2"


@pytest.mark.parametrize(
    "value",
    [
        StoredTask("k", Priority.LOW, Outcome.DEFERRED),
        Deferral(call("a", Priority.LOW), Reason.STALE, "x"),
        conditions(),
    ],
    ids=["StoredTask", "Deferral", "Conditions"],
)
def test_what_the_queue_hands_out_cannot_be_changed(value: object) -> None:
    first = dataclasses.fields(value)[0].name  # type: ignore[arg-type]
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(value, first, None)


def test_cancelled_heads_are_skipped_by_choose_itself_however_many() -> None:
    queue = DialQueue()
    for key in ("a", "b", "c"):
        queue.add(call(key, Priority.HIGH), at=NOW)
    queue.withdraw("a")
    queue.withdraw("b")
    assert _chosen(queue) == Priority.HIGH
    entry = queue.pop(Priority.HIGH)
    assert (entry.work.intent_id, entry.cancelled) == ("c", False)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("age", "stale"),
    [
        pytest.param(3600.0, False, id="at-its-priority-limit"),
        pytest.param(3600.5, True, id="past-it-by-the-sensor-clock"),
        pytest.param(-200.0, False, id="a-sensor-clock-ahead"),
    ],
)
def test_a_call_whose_alert_is_past_its_age_leaves_its_queue_before_asking_for_budget(
    age: float, stale: bool
) -> None:
    """A backlog replayed after an outage: just queued, but its alert is about the past."""
    rules = replace(RULES, max_alert_age={Priority.NORMAL: 3600.0})
    old = replace(call("old", Priority.NORMAL), alert=alert("old", at=NOW - age))
    queue = DialQueue()
    queue.add(old, at=NOW)
    queue.add(call("new", Priority.NORMAL), at=NOW)
    found = queue.expire_stale(NOW, rules)
    if not stale:
        assert found == []
        return
    assert [(d.call.intent_id, d.reason) for d in found] == [("old", Reason.STALE)]
    assert "max_alert_age_seconds" in found[0].detail
    assert queue.live[Priority.NORMAL] == 1  # the fresh call behind it stays
