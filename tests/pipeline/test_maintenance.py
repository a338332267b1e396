"""Maintenance windows: what a request may say, what a window covers, and its stored form."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import alert
from tripline.messages import Alert, Priority
from tripline.pipeline.maintenance import (
    MAX_SECONDS,
    Window,
    WindowState,
    covering,
    from_doc,
    parse_request,
)
from tripline.pipeline.validate import Limits, validate

NOW = 1_780_000_000.0  # 2026-05-28T20:26:40Z


def an_alert(*, timestamp: float = NOW, **fields: Any) -> Alert:
    body = orjson.dumps(alert(**fields) | {"timestamp": iso(timestamp)})
    result = validate(body, now=NOW + 60, limits=Limits())
    assert isinstance(result, tuple), result
    return result[0]


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def window(**fields: Any) -> Window:
    doc = {"sensorId": "S1", "durationSeconds": 3600, "comment": "pump swap", "createdBy": "ana"}
    body = {k: v for k, v in (doc | fields).items() if v is not None}
    parsed = parse_request(body, window_id="w1", now=NOW)
    assert isinstance(parsed, Window), parsed
    return parsed


def problems(doc: object, now: float = NOW) -> list[tuple[str, str]]:
    parsed = parse_request(doc, window_id="w1", now=now)
    assert isinstance(parsed, list), parsed
    return [(p.field, p.reason.value) for p in parsed]


def test_a_request_for_one_sensor_opens_now_for_its_duration() -> None:
    w = window()
    assert (w.sensor_id, w.customer_id, w.alert_type) == ("S1", "", "")
    assert (w.starts_at, w.ends_at, w.created_at) == (NOW, NOW + 3600, NOW)
    assert (w.comment, w.created_by, w.window_id) == ("pump swap", "ana", "w1")


def test_an_explicit_start_and_end_are_kept() -> None:
    w = window(durationSeconds=None, startsAt=iso(NOW + 600), endsAt="2026-05-29T00:00:00+02:00")
    assert (w.starts_at, w.ends_at) == (NOW + 600, 1_780_005_600.0)


BASE = {"sensorId": "S1", "durationSeconds": 3600, "comment": "pump swap", "createdBy": "ana"}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"sensorId": None}, [("sensorId", "missing_field")]),
        ({"sensorId": ""}, [("sensorId", "invalid_field")]),
        ({"sensorId": "has space"}, [("sensorId", "invalid_field")]),
        ({"sensorId": 7}, [("sensorId", "invalid_field")]),
        ({"alertType": "temp critical"}, [("alertType", "invalid_field")]),
        ({"comment": None}, [("comment", "missing_field")]),
        ({"comment": "   "}, [("comment", "invalid_field")]),
        ({"comment": "x" * 501}, [("comment", "invalid_field")]),
        ({"createdBy": None}, [("createdBy", "missing_field")]),
        ({"createdBy": "a\nb"}, [("createdBy", "invalid_field")]),
        ({"durationSeconds": None}, [("endsAt", "missing_field")]),
        ({"endsAt": "2026-05-29T00:00:00Z"}, [("endsAt", "missing_field")]),
        ({"durationSeconds": 0}, [("durationSeconds", "invalid_field")]),
        ({"durationSeconds": -5}, [("durationSeconds", "invalid_field")]),
        ({"durationSeconds": "1h"}, [("durationSeconds", "invalid_field")]),
        ({"durationSeconds": True}, [("durationSeconds", "invalid_field")]),
        ({"durationSeconds": MAX_SECONDS + 1}, [("durationSeconds", "invalid_field")]),
        ({"durationSeconds": None, "endsAt": "tomorrow"}, [("endsAt", "invalid_field")]),
        ({"durationSeconds": None, "endsAt": "2026-05-29T00:00:00"}, [("endsAt", "invalid_field")]),
        (
            {"durationSeconds": None, "endsAt": "2026-05-28T20:00:00Z"},
            [("endsAt", "invalid_field")],
        ),
        (
            {"startsAt": "2026-05-28T10:00:00Z", "durationSeconds": 60},
            [("durationSeconds", "invalid_field")],
        ),
        ({"startsAt": 5}, [("startsAt", "invalid_field")]),
        ({"mode": "all"}, [("mode", "invalid_field")]),
        (
            {"sensorId": None, "comment": None},
            [("sensorId", "missing_field"), ("comment", "missing_field")],
        ),
    ],
)
def test_each_bad_field_is_its_own_problem(
    change: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    doc = {k: v for k, v in (BASE | change).items() if v is not None}
    assert problems(doc) == expected


@pytest.mark.parametrize("body", [None, [], "sensor", 3])
def test_a_body_that_is_not_an_object_is_refused(body: object) -> None:
    assert problems(body) == [("", "invalid_json")]


def test_a_window_covers_alerts_raised_in_it_or_decided_while_it_is_open() -> None:
    w = window(startsAt=iso(NOW + 100), durationSeconds=100)  # open NOW+100 .. NOW+200
    raised_before = an_alert(sensor="S1", timestamp=NOW)
    raised_inside = an_alert(sensor="S1", timestamp=NOW + 150)
    assert not w.covers(raised_before, now=NOW + 50)  # pending: not yet
    assert w.covers(raised_before, now=NOW + 100)  # decided while open
    assert not w.covers(raised_before, now=NOW + 200)  # the end is excluded
    assert w.covers(raised_inside, now=NOW + 500)  # replayed after the window closed
    assert not w.covers(an_alert(sensor="S2", timestamp=NOW + 150), now=NOW + 150)


@pytest.mark.parametrize(
    ("fields", "sensor", "customer", "alert_type", "covered"),
    [
        ({"sensorId": "S1"}, "S1", "C9", "temp_critical", True),
        ({"sensorId": "S1"}, "S2", "C9", "temp_critical", False),
        ({"sensorId": None, "customerId": "C9"}, "S7", "C9", "flood", True),
        ({"sensorId": None, "customerId": "C9"}, "S7", "C8", "flood", False),
        ({"customerId": "C9"}, "S1", "C8", "flood", False),  # both must match
        ({"alertType": "flood"}, "S1", "C9", "flood", True),
        ({"alertType": "flood"}, "S1", "C9", "temp_critical", False),
    ],
)
def test_matching_by_sensor_customer_and_alert_type(
    fields: dict[str, Any], sensor: str, customer: str, alert_type: str, covered: bool
) -> None:
    w = window(**fields)
    a = an_alert(sensor=sensor, customer=customer, alert_type=alert_type)
    assert w.covers(a, now=NOW + 1) is covered


def test_covering_finds_the_window_that_applies() -> None:
    first, second = window(sensorId="S1"), window(sensorId="S2")
    a = an_alert(sensor="S2")
    assert covering((first, second), a, NOW + 1) is second
    assert covering((first,), a, NOW + 1) is None
    assert covering((), a, NOW + 1) is None


def test_a_window_is_pending_active_then_ended() -> None:
    w = window(startsAt=iso(NOW + 10), durationSeconds=10)
    assert [w.state(t) for t in (NOW, NOW + 10, NOW + 19.9, NOW + 20)] == [
        WindowState.PENDING,
        WindowState.ACTIVE,
        WindowState.ACTIVE,
        WindowState.ENDED,
    ]


def test_a_record_says_which_window_and_why() -> None:
    assert window().detail() == "maintenance w1 by ana: pump swap"


@st.composite
def windows(draw: st.DrawFn) -> Window:
    start = draw(st.integers(min_value=1_500_000_000_000, max_value=2_500_000_000_000))
    length = draw(st.integers(min_value=1, max_value=MAX_SECONDS * 1000))
    return Window(
        window_id=draw(st.text("abcdef0123456789", min_size=1, max_size=12)),
        sensor_id=draw(st.sampled_from(["", "S1", "TEMP-SNS-4421"])),
        customer_id=draw(st.sampled_from(["", "C1"])),
        alert_type=draw(st.sampled_from(["", "flood"])),
        starts_at=start / 1000,
        ends_at=(start + length) / 1000,
        comment=draw(st.text(min_size=1, max_size=50)),
        created_by="ana",
        created_at=start / 1000,
    )


@given(w=windows())
def test_a_stored_window_reads_back_as_itself(w: Window) -> None:
    assert from_doc(orjson.loads(orjson.dumps(w.to_doc()))) == w


@pytest.mark.parametrize(
    "doc",
    [None, [], {}, {"id": "x"}, {"id": "x", "startsAt": "soon", "endsAt": "later"}],
)
def test_an_unreadable_stored_window_is_none_not_an_error(doc: object) -> None:
    assert from_doc(doc) is None


def test_priority_does_not_matter_a_critical_alert_is_covered_too() -> None:
    """The technician is on site: even a critical reading is what the work is doing."""
    a = replace(an_alert(sensor="S1", alert_type="temp_critical"), priority=Priority.CRITICAL)
    assert window().covers(a, now=NOW + 1)
