"""Suppression: cooldown per sensor and resolved alerts, with `now` passed in."""

from __future__ import annotations

import dataclasses

import orjson
import pytest

from tripline.messages import Alert, Reason
from tripline.pipeline.flap import FlapState
from tripline.pipeline.suppress import Proceed, SensorState, Suppressed, suppress

COOLDOWN = 3600.0


def alert(firing: bool = True) -> Alert:
    return Alert(
        idempotency_key="k",
        sensor_id="s",
        customer_id="c",
        alert_type="t",
        timestamp=0.0,
        firing=firing,
        severity="",
        current_value=1.0,
        threshold=0.5,
        unit="u",
        reference_id="r",
        telemetry_hash="h",
        accepted_at=0.0,
    )


@pytest.mark.parametrize(
    ("state", "firing", "now", "expected"),
    [
        pytest.param(SensorState(), True, 100.0, Proceed(), id="first-alert-proceeds"),
        pytest.param(
            SensorState(cooldown_until=200.0),
            True,
            100.0,
            Suppressed(Reason.COOLDOWN, 200.0),
            id="repeat-inside-window-is-suppressed",
        ),
        pytest.param(
            SensorState(cooldown_until=100.0), True, 100.0, Proceed(), id="window-end-is-exclusive"
        ),
        pytest.param(
            SensorState(cooldown_until=50.0), True, 100.0, Proceed(), id="after-window-proceeds"
        ),
        pytest.param(
            SensorState(), False, 100.0, Suppressed(Reason.RESOLVED), id="resolved-never-calls"
        ),
    ],
)
def test_rules(
    state: SensorState, firing: bool, now: float, expected: Proceed | Suppressed
) -> None:
    _, decision = suppress(state, alert(firing), now=now, cooldown=COOLDOWN)
    assert decision == expected


def test_proceeding_opens_the_window() -> None:
    state, _ = suppress(SensorState(), alert(), now=100.0, cooldown=COOLDOWN)
    assert state.cooldown_until == 100.0 + COOLDOWN
    _, second = suppress(state, replace_key(alert(), "k2"), now=101.0, cooldown=COOLDOWN)
    assert second == Suppressed(Reason.COOLDOWN, 100.0 + COOLDOWN)


def test_snapshot_round_trip_and_unknown_versions_start_clean() -> None:
    state = SensorState(cooldown_until=12.5, firing=True, last_alert_at=3.0)
    assert SensorState.from_snapshot(orjson.loads(orjson.dumps(state.to_snapshot()))) == state
    assert SensorState.from_snapshot({"version": 99}) == SensorState()
    assert SensorState.from_snapshot({"version": 1, "cooldownUntil": "x"}) == SensorState()


def test_the_flap_history_survives_a_snapshot() -> None:
    flap = FlapState(
        samples=(False, True, False, True),
        last_sample_at=50.0,
        flapping=True,
        since=40.0,
        percent=31.0,
    )
    state = SensorState(cooldown_until=1.0, firing=True, last_alert_at=2.0, flap=flap)
    assert SensorState.from_snapshot(orjson.loads(orjson.dumps(state.to_snapshot()))) == state


def test_a_version_1_snapshot_keeps_its_cooldown_and_starts_an_empty_flap_history() -> None:
    doc = {"version": 1, "cooldownUntil": 9.0, "firing": True, "lastAlertAt": 3.0}
    assert SensorState.from_snapshot(doc) == SensorState(
        cooldown_until=9.0, firing=True, last_alert_at=3.0
    )


def test_a_corrupt_flap_history_starts_clean() -> None:
    doc = SensorState(flap=FlapState(samples=(True,))).to_snapshot()
    doc["flap"]["samples"] = "1x0"
    assert SensorState.from_snapshot(doc) == SensorState()


def test_the_alert_holding_the_window_is_not_suppressed_by_it() -> None:
    """A resume sweep can route an accepted alert again: its own window must not stop it."""
    opened, _ = suppress(SensorState(), alert(), now=100.0, cooldown=COOLDOWN)
    _, again = suppress(opened, alert(), now=130.0, cooldown=COOLDOWN)
    assert again == Proceed()
    other = replace_key(alert(), "k2")
    _, second = suppress(opened, other, now=130.0, cooldown=COOLDOWN)
    assert second == Suppressed(Reason.COOLDOWN, 100.0 + COOLDOWN)


def replace_key(a: Alert, key: str) -> Alert:
    return dataclasses.replace(a, idempotency_key=key)


def test_the_window_key_survives_a_snapshot() -> None:
    """After a restart the alert holding the window must still be let through on replay."""
    opened, _ = suppress(SensorState(), alert(), now=100.0, cooldown=COOLDOWN)
    restored = SensorState.from_snapshot(orjson.loads(orjson.dumps(opened.to_snapshot())))
    assert restored == opened
    assert restored.window_key == "k"
    _, again = suppress(restored, alert(), now=130.0, cooldown=COOLDOWN)
    assert again == Proceed()


@pytest.mark.parametrize(
    "doc",
    [
        pytest.param(None, id="null"),
        pytest.param([], id="a-list"),
        pytest.param("v2", id="a-string"),
        pytest.param({}, id="no-version"),
        pytest.param({"version": 3}, id="a-newer-version"),
        pytest.param({"version": 2, "cooldownUntil": 9.0}, id="a-missing-field"),
        pytest.param(
            {"version": 2, "cooldownUntil": 9.0, "firing": True, "lastAlertAt": 3.0, "flap": {}},
            id="an-empty-flap-history",
        ),
    ],
)
def test_an_unreadable_snapshot_starts_clean(doc: object) -> None:
    assert SensorState.from_snapshot(doc) == SensorState()


def test_a_snapshot_without_flap_history_or_window_key_keeps_its_cooldown() -> None:
    doc = {"version": 2, "cooldownUntil": 9.0, "firing": True, "lastAlertAt": 3.0}
    assert SensorState.from_snapshot(doc) == SensorState(
        cooldown_until=9.0, firing=True, last_alert_at=3.0
    )


def test_the_snapshot_document() -> None:
    flap = FlapState(samples=(False, True), last_sample_at=5.0, flapping=True, since=4.0)
    state = SensorState(
        cooldown_until=12.5, firing=True, last_alert_at=3.0, flap=flap, window_key="k"
    )
    assert state.to_snapshot() == {
        "version": 2,
        "cooldownUntil": 12.5,
        "firing": True,
        "lastAlertAt": 3.0,
        "windowKey": "k",
        "flap": {
            "samples": "01",
            "lastSampleAt": 5.0,
            "flapping": True,
            "since": 4.0,
            "percent": 0.0,
        },
    }


def test_a_resolved_alert_records_the_time_and_keeps_the_window() -> None:
    state = SensorState(cooldown_until=500.0, firing=True, last_alert_at=3.0, window_key="k")
    after, decision = suppress(state, alert(firing=False), now=100.0, cooldown=COOLDOWN)
    assert decision == Suppressed(Reason.RESOLVED)
    assert after == SensorState(
        cooldown_until=500.0, firing=False, last_alert_at=100.0, window_key="k"
    )


def test_a_suppressed_alert_records_the_time_and_keeps_the_window() -> None:
    state = SensorState(cooldown_until=500.0, last_alert_at=3.0, window_key="k")
    after, _ = suppress(state, replace_key(alert(), "k2"), now=100.0, cooldown=COOLDOWN)
    assert after == SensorState(
        cooldown_until=500.0, firing=True, last_alert_at=100.0, window_key="k"
    )
