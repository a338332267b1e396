"""Flap detection: Nagios' worked numbers, hysteresis, and sampling of event-driven sensors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tripline.pipeline.flap import (
    HISTORY,
    FlapChange,
    FlapRules,
    FlapState,
    observe,
    percent_state_change,
)

RULES = FlapRules(low=20.0, high=30.0, sample_seconds=60.0)


def alternating_tail(changes: int) -> tuple[bool, ...]:
    """21 samples, steady except that the last `changes` transitions alternate."""
    steady = (False,) * (HISTORY - changes)
    tail = tuple(i % 2 == 0 for i in range(changes))
    return steady + tail


@pytest.mark.parametrize(
    ("samples", "expected"),
    [
        pytest.param(alternating_tail(4), 24.2, id="nagios-last-4-alternating"),
        pytest.param(alternating_tail(5), 29.9, id="nagios-last-5-alternating"),
        pytest.param(alternating_tail(6), 35.5, id="nagios-last-6-alternating"),
        pytest.param(alternating_tail(20), 100.0, id="full-alternation"),
        pytest.param((True,) * HISTORY, 0.0, id="steady"),
        pytest.param((), 0.0, id="no-history"),
        pytest.param((True,), 0.0, id="one-sample"),
        pytest.param((False, True), 6.25, id="one-change-newest-weighs-1.25"),
        pytest.param((True, False) + (False,) * 19, 3.75, id="one-change-oldest-weighs-0.75"),
        pytest.param((False,) * 30 + (True,), 6.25, id="only-the-last-21-count"),
    ],
)
def test_percent_state_change(samples: tuple[bool, ...], expected: float) -> None:
    assert percent_state_change(samples) == pytest.approx(expected, abs=0.05)


def feed(
    states: list[bool], *, every: float = 10.0, start: FlapState | None = None
) -> list[tuple[FlapState, FlapChange]]:
    state, out = start or FlapState(), []
    for i, firing in enumerate(states):
        state, change = observe(state, firing, now=1000.0 + i * every, rules=RULES)
        out.append((state, change))
    return out


def test_a_toggling_sensor_starts_flapping_once_at_the_high_threshold() -> None:
    steps = feed([i % 2 == 0 for i in range(40)])
    changes = [c for _, c in steps]
    assert changes.count(FlapChange.STARTED) == 1
    first = changes.index(FlapChange.STARTED)
    # Quiet before the first alert: its firing is the 1st change; the 6th reaches 35.5 % >= 30.
    assert first == 5
    assert steps[first - 1][0].percent < RULES.high <= steps[first][0].percent
    assert all(s.flapping for s, _ in steps[first:])
    assert FlapChange.STOPPED not in changes


def test_inside_the_dead_band_nothing_changes() -> None:
    """Between low and high the state keeps what it was, in both directions."""
    between = FlapState(samples=alternating_tail(4), last_sample_at=1000.0)  # 24.2 %
    state, change = observe(between, None, now=1000.0, rules=RULES)
    assert (state.flapping, change) == (False, FlapChange.NONE)
    flapping = FlapState(samples=alternating_tail(4), last_sample_at=1000.0, flapping=True)
    state, change = observe(flapping, None, now=1000.0, rules=RULES)
    assert (state.flapping, change) == (True, FlapChange.NONE)


def test_silence_counts_as_steady_samples_so_a_quiet_sensor_stops_flapping() -> None:
    state = feed([i % 2 == 0 for i in range(21)])[-1][0]
    assert state.flapping
    t = state.last_sample_at
    stopped_at = None
    for minute in range(1, 40):
        state, change = observe(state, None, now=t + minute * 60.0, rules=RULES)
        if change == FlapChange.STOPPED:
            stopped_at = minute
            break
    # 20 changes must age out until <= 20 %: that takes well over ten quiet samples.
    assert stopped_at is not None
    assert 10 < stopped_at <= HISTORY
    assert not state.flapping
    assert state.since == 0.0


def test_the_stop_is_reported_once_and_a_new_episode_can_start() -> None:
    toggles = [i % 2 == 0 for i in range(12)]
    state = feed(toggles)[-1][0]
    state, change = observe(state, None, now=state.last_sample_at + 3600.0, rules=RULES)
    assert change == FlapChange.STOPPED
    state, change = observe(state, None, now=state.last_sample_at + 7200.0, rules=RULES)
    assert change == FlapChange.NONE
    again = feed(toggles, start=state)
    assert [c for _, c in again].count(FlapChange.STARTED) == 1


def test_the_episode_remembers_when_it_started() -> None:
    steps = feed([i % 2 == 0 for i in range(10)])
    started = next(s for s, c in steps if c == FlapChange.STARTED)
    assert started.since == started.last_sample_at
    assert steps[-1][0].since == started.since


def test_a_sensor_that_fires_once_an_hour_and_resolves_never_flaps() -> None:
    state = FlapState()
    for hour in range(48):
        for offset, firing in ((0.0, True), (300.0, False)):
            state, change = observe(state, firing, now=hour * 3600.0 + offset, rules=RULES)
            assert change != FlapChange.STARTED
    assert not state.flapping


@given(st.lists(st.booleans(), max_size=60))
def test_percent_is_a_bounded_percentage(samples: list[bool]) -> None:
    assert 0.0 <= percent_state_change(tuple(samples)) <= 100.0 + 1e-9


@given(
    st.lists(
        st.tuples(st.one_of(st.none(), st.booleans()), st.floats(min_value=0, max_value=600)),
        max_size=80,
    )
)
def test_hysteresis_holds_for_any_sequence(steps: list[tuple[bool | None, float]]) -> None:
    """Flapping starts only at >= high, stops only at <= low, and history stays bounded."""
    state, now = FlapState(), 0.0
    for firing, gap in steps:
        now += gap
        before = state.flapping
        state, change = observe(state, firing, now=now, rules=RULES)
        assert len(state.samples) <= HISTORY
        if change == FlapChange.STARTED:
            assert not before
            assert state.flapping
            assert state.percent >= RULES.high
        elif change == FlapChange.STOPPED:
            assert before
            assert not state.flapping
            assert state.percent <= RULES.low
        else:
            assert state.flapping == before
            # No change is only allowed where the thresholds do not demand one.
            assert not (not before and state.percent >= RULES.high)
            assert not (before and state.percent <= RULES.low)


# --- the thresholds, exactly: Nagios starts "at or above" high and stops "at or below" low ---


def samples(text: str) -> tuple[bool, ...]:
    return tuple(c == "1" for c in text)


# A transition between samples x-1 and x weighs 0.75 + (x-1)/38; transitions x and 21-x
# together weigh 2.0. Two such pairs are 4/20 = 20 %, three are 6/20 = 30 % (exactly, in floats).
AT_20 = samples("010000000000000000010")  # transitions 1, 2, 19, 20
AT_30 = samples("011110000010000011110")  # transitions 1, 5, 10, 11, 16, 20


@pytest.mark.parametrize(
    ("history", "flapping", "percent", "expected_flapping", "change"),
    [
        pytest.param(AT_30, False, 30.0, True, FlapChange.STARTED, id="exactly-30-starts"),
        pytest.param(AT_20, True, 20.0, False, FlapChange.STOPPED, id="exactly-20-stops"),
        pytest.param(AT_30, True, 30.0, True, FlapChange.NONE, id="30-while-flapping-stays"),
        pytest.param(AT_20, False, 20.0, False, FlapChange.NONE, id="20-while-calm-stays"),
    ],
)
def test_the_thresholds_are_inclusive(
    history: tuple[bool, ...],
    flapping: bool,
    percent: float,
    expected_flapping: bool,
    change: FlapChange,
) -> None:
    state = FlapState(samples=history, last_sample_at=1000.0, flapping=flapping, since=5.0)
    new, happened = observe(state, None, now=1000.0, rules=RULES)
    assert (new.percent, new.flapping, happened) == (percent, expected_flapping, change)


def test_the_defaults_are_nagios_compiled_ones_and_an_empty_history() -> None:
    assert FlapRules() == FlapRules(low=20.0, high=30.0, sample_seconds=60.0)
    assert FlapState() == FlapState(
        samples=(), last_sample_at=0.0, flapping=False, since=0.0, percent=0.0
    )


def test_the_change_values_are_what_records_and_logs_say() -> None:
    assert [c.value for c in FlapChange] == ["none", "flapping_started", "flapping_stopped"]
