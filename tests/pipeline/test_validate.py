"""Validation: one problem per bad field, never an exception, whatever the bytes."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from messages import Alert, Reason
from pipeline.validate import Limits, Rejected, reference_id, telemetry_hash, validate

NOW = datetime(2024, 5, 13, 15, 0, tzinfo=UTC).timestamp()
LIMITS = Limits()


def guide(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "idempotencyKey": "sensor-evt-89234-1715629384",
        "sensorId": "TEMP-SNS-4421",
        "customerId": "CUST-9981",
        "alertType": "temp_critical",
        "timestamp": "2024-05-13T14:32:00Z",
        "telemetryData": {"currentValue": 89.5, "threshold": 85.0, "unit": "celsius"},
    }
    doc.update(changes)
    return {k: v for k, v in doc.items() if v is not None}


def problems(body: bytes) -> list[tuple[str, str]]:
    result = validate(body, now=NOW, limits=LIMITS)
    assert isinstance(result, Rejected)
    return [(p.field, p.reason.value) for p in result.problems]


def test_the_guide_payload_is_an_alert() -> None:
    result = validate(orjson.dumps(guide()), now=NOW, limits=LIMITS)
    assert not isinstance(result, Rejected)
    alert, doc = result
    assert isinstance(alert, Alert)
    assert alert.sensor_id == "TEMP-SNS-4421"
    assert alert.firing
    assert alert.timestamp == datetime(2024, 5, 13, 14, 32, tzinfo=UTC).timestamp()
    assert alert.reference_id == reference_id("sensor-evt-89234-1715629384")
    assert doc["telemetryData"]["unit"] == "celsius"


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        pytest.param(
            guide(idempotencyKey=None), [("idempotencyKey", "missing_field")], id="key-required"
        ),
        pytest.param(guide(sensorId=42), [("sensorId", "invalid_field")], id="id-must-be-string"),
        pytest.param(guide(customerId=" "), [("customerId", "invalid_field")], id="blank-id"),
        pytest.param(guide(sensorId="a b"), [("sensorId", "invalid_field")], id="space-in-id"),
        pytest.param(guide(sensorId="x" * 129), [("sensorId", "invalid_field")], id="id-too-long"),
        pytest.param(
            guide(alertType="temp critical!"),
            [("alertType", "invalid_field")],
            id="alert-type-charset",
        ),
        pytest.param(
            guide(timestamp="2024-05-13T14:32:00"),
            [("timestamp", "invalid_field")],
            id="naive-timestamp-refused-not-read-as-utc",
        ),
        pytest.param(
            guide(timestamp="yesterday"), [("timestamp", "invalid_field")], id="timestamp-not-iso"
        ),
        pytest.param(
            guide(timestamp=1715629384), [("timestamp", "invalid_field")], id="timestamp-not-string"
        ),
        pytest.param(
            guide(timestamp="2024-05-14T14:32:00Z"),
            [("timestamp", "invalid_field")],
            id="timestamp-in-future",
        ),
        pytest.param(
            guide(telemetryData=None), [("telemetryData", "missing_field")], id="telemetry-required"
        ),
        pytest.param(
            guide(telemetryData=[1]), [("telemetryData", "invalid_field")], id="telemetry-object"
        ),
        pytest.param(
            guide(telemetryData={"currentValue": True, "threshold": 1, "unit": "c"}),
            [("telemetryData.currentValue", "invalid_field")],
            id="bool-is-no-number",
        ),
        pytest.param(
            guide(telemetryData={"currentValue": 1e300, "threshold": 1, "unit": "c"}),
            [("telemetryData.currentValue", "invalid_field")],
            id="absurd-number",
        ),
        pytest.param(
            guide(telemetryData={"threshold": 1}),
            [
                ("telemetryData.currentValue", "missing_field"),
                ("telemetryData.unit", "missing_field"),
            ],
            id="every-missing-field-named",
        ),
        pytest.param(guide(status="maybe"), [("status", "invalid_field")], id="status-choice"),
        pytest.param(guide(severity=7), [("severity", "invalid_field")], id="severity-string"),
    ],
)
def test_each_rule_names_its_field(doc: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    assert problems(orjson.dumps(doc)) == expected


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        pytest.param(b"", "invalid_json", id="empty"),
        pytest.param(b"{", "invalid_json", id="truncated"),
        pytest.param(b'"a string"', "invalid_json", id="not-object"),
        pytest.param(b'{"a": NaN}', "invalid_json", id="nan-literal"),
        pytest.param(b" " * 70_000, "too_large", id="over-64k"),
    ],
)
def test_body_level_problems(body: bytes, reason: str) -> None:
    assert problems(body) == [("", reason)]


def test_resolved_status_and_severity_are_read() -> None:
    result = validate(
        orjson.dumps(guide(status="resolved", severity="high")), now=NOW, limits=LIMITS
    )
    assert not isinstance(result, Rejected)
    assert not result[0].firing
    assert result[0].severity == "high"


def test_telemetry_hash_ignores_key_order() -> None:
    assert telemetry_hash({"a": 1, "b": 2}) == telemetry_hash({"b": 2, "a": 1})
    assert telemetry_hash({"a": 1}) != telemetry_hash({"a": 2})


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(body: bytes) -> None:
    result = validate(body, now=NOW, limits=LIMITS)
    if isinstance(result, Rejected):
        assert result.problems
        assert all(isinstance(p.reason, Reason) for p in result.problems)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.integers(min_value=-(2**53), max_value=2**53),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=10,
)


# The first draw compiles the recursive strategy (~1 s on this machine): not a slow test.
@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(list(guide())), json_values, max_size=6))
def test_any_json_object_gives_an_alert_or_named_problems(doc: dict[str, Any]) -> None:
    result = validate(orjson.dumps(doc), now=NOW, limits=LIMITS)
    if isinstance(result, Rejected):
        assert all(p.field or p.reason == Reason.INVALID_JSON for p in result.problems)
    else:
        alert, _ = result
        assert math.isfinite(alert.current_value)
        assert alert.timestamp <= NOW + LIMITS.max_future_skew_seconds
