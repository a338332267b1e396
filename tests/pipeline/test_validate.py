"""Validation: one problem per bad field, never an exception, whatever the bytes."""

from __future__ import annotations

import dataclasses
import hashlib
import math
import sys
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tripline.messages import Alert, Priority, Reason
from tripline.pipeline.prioritise import PriorityRules, prioritise
from tripline.pipeline.validate import (
    _PRINTABLE_ASCII,
    UNSAFE_CHARACTERS,
    Limits,
    Problem,
    Rejected,
    reference_id,
    telemetry_hash,
    validate,
)

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


# --- boundaries: each bound at, just inside and just outside (fixed expectations) ----------

_KEY = "sensor-evt-89234-1715629384"


def _verdict(doc: dict[str, Any] | bytes, **limits: Any) -> list[tuple[str, str]]:
    body = doc if isinstance(doc, bytes) else orjson.dumps(doc)
    result = validate(body, now=NOW, limits=Limits(**limits) if limits else LIMITS)
    if isinstance(result, Rejected):
        return [(p.field, p.reason.value) for p in result.problems]
    return []


def _nested(depth: int) -> Any:
    """A value whose arrays nest `depth` levels (1: [])."""
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        # The document is level 1, telemetryData level 2: an extra field's arrays add theirs.
        pytest.param(guide(x=_nested(31)), [], id="depth-32-in-all"),
        pytest.param(guide(x=_nested(32)), [("", "invalid_field")], id="depth-33"),
        pytest.param(
            # orjson reads it (1,024 levels) but could not write it again (254): the issue's.
            b'{"x":' + b"[" * 300 + b"]" * 300 + b"," + orjson.dumps(guide())[1:],
            [("", "invalid_field")],
            id="depth-301-the-issue",
        ),
        pytest.param(
            guide(telemetryData={"currentValue": 1, "threshold": 2, "unit": "c", "x": _nested(31)}),
            [("", "invalid_field")],
            id="depth-33-inside-telemetry",
        ),
        pytest.param(
            guide(x={"a": [{"b": [{"c": [1, 2, {"d": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}]}]}]}),
            [],
            id="brackets-in-strings-are-no-depth",
        ),
    ],
)
def test_nesting_bound(doc: dict[str, Any] | bytes, expected: list[tuple[str, str]]) -> None:
    assert _verdict(doc) == expected


def test_a_too_deep_payload_still_names_its_key() -> None:
    result = validate(orjson.dumps(guide(x=_nested(40))), now=NOW, limits=LIMITS)
    assert isinstance(result, Rejected)
    assert result.idempotency_key == _KEY
    assert result.reason == Reason.INVALID_FIELD
    assert "nested deeper than 32" in result.problems[0].message


def _stamp(offset_seconds: float) -> str:
    return datetime.fromtimestamp(NOW + offset_seconds, UTC).isoformat()


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        pytest.param(_stamp(-86400), [], id="exactly-24h-old"),
        pytest.param(_stamp(-86401), [("timestamp", "invalid_field")], id="24h-and-1s-old"),
        pytest.param(_stamp(300), [], id="exactly-300s-ahead"),
        pytest.param(_stamp(301), [("timestamp", "invalid_field")], id="301s-ahead"),
        pytest.param("0001-01-01T00:00:00+14:00", [("timestamp", "invalid_field")], id="year-1"),
        pytest.param("1969-12-31T23:59:59Z", [("timestamp", "invalid_field")], id="before-1970"),
        pytest.param("9999-12-31T23:59:59Z", [("timestamp", "invalid_field")], id="year-9999"),
        # datetime.fromisoformat() overlooked a trailing NUL (found by the adversarial suite).
        pytest.param(_stamp(0) + "\x00", [("timestamp", "invalid_field")], id="trailing-nul"),
        pytest.param(_stamp(0) + "\n", [("timestamp", "invalid_field")], id="trailing-newline"),
    ],
)
def test_timestamp_bounds(stamp: str, expected: list[tuple[str, str]]) -> None:
    assert _verdict(guide(timestamp=stamp)) == expected


def test_a_repeated_time_is_judged_against_each_alerts_own_now() -> None:
    # The last parsed time is kept (alerts raised together share it): the bounds are not.
    body = orjson.dumps(guide(timestamp=_stamp(0)))
    assert not isinstance(validate(body, now=NOW, limits=LIMITS), Rejected)
    assert problems_at(body, NOW + 86401) == [("timestamp", "invalid_field")]
    assert problems_at(body, NOW - 301) == [("timestamp", "invalid_field")]
    assert not isinstance(validate(body, now=NOW, limits=LIMITS), Rejected)
    for _ in range(2):  # a bad time repeated is refused each time, for its own reason
        naive = validate(
            orjson.dumps(guide(timestamp="2024-05-13T14:32:00")), now=NOW, limits=LIMITS
        )
        assert isinstance(naive, Rejected)
        assert "UTC offset" in naive.problems[0].message


def problems_at(body: bytes, now: float) -> list[tuple[str, str]]:
    result = validate(body, now=now, limits=LIMITS)
    assert isinstance(result, Rejected)
    return [(p.field, p.reason.value) for p in result.problems]


@pytest.mark.parametrize(
    ("changes", "priority"),
    [
        pytest.param({}, Priority.CRITICAL, id="by-type"),
        pytest.param({"alertType": "door_open"}, Priority.NORMAL, id="unknown-type-default"),
        pytest.param(
            {"alertType": "door_open", "severity": "HIGH"}, Priority.HIGH, id="severity-raises"
        ),
        pytest.param({"severity": "low"}, Priority.CRITICAL, id="severity-never-lowers"),
    ],
)
def test_given_rules_the_alert_carries_its_priority(
    changes: dict[str, Any], priority: Priority
) -> None:
    rules = PriorityRules.from_config(
        "normal", {"temp_critical": "critical"}, {"high": "high", "low": "low"}
    )
    result = validate(orjson.dumps(guide(**changes)), now=NOW, limits=LIMITS, rules=rules)
    assert not isinstance(result, Rejected)
    assert result[0].priority == priority
    assert result[0].priority == prioritise(result[0].alert_type, result[0].severity, rules)
    plain = validate(orjson.dumps(guide(**changes)), now=NOW, limits=LIMITS)
    assert not isinstance(plain, Rejected)
    assert plain[0].priority == Priority.NORMAL  # no rules: the default, as before


def test_the_id_and_type_patterns_match_nothing_blank_or_unsafe() -> None:
    # FieldChecker.string returns what they match without its other checks. They are classes
    # of characters repeated, so checking every character checks every string.
    for pattern in _PRINTABLE_ASCII:
        assert pattern.pattern.startswith("^[")
        assert pattern.pattern.endswith("]+$")
        for char in map(chr, range(sys.maxunicode + 1)):
            if pattern.fullmatch(char):
                assert char.strip() == char, repr(char)
                assert not UNSAFE_CHARACTERS.search(char), repr(char)


def test_an_old_alert_says_why() -> None:
    result = validate(orjson.dumps(guide(timestamp=_stamp(-90000))), now=NOW, limits=LIMITS)
    assert isinstance(result, Rejected)
    assert "validate.max_age_seconds" in result.problems[0].message


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        pytest.param({"sensorId": "s" * 128}, [], id="id-128"),
        pytest.param({"sensorId": "s" * 129}, [("sensorId", "invalid_field")], id="id-129"),
        pytest.param({"alertType": "t" * 64}, [], id="type-64"),
        pytest.param({"alertType": "t" * 65}, [("alertType", "invalid_field")], id="type-65"),
        pytest.param({"severity": "s" * 32}, [], id="severity-32"),
        pytest.param({"severity": "s" * 33}, [("severity", "invalid_field")], id="severity-33"),
        pytest.param(
            {"telemetryData": {"currentValue": 1e15, "threshold": -1e15, "unit": "u" * 32}},
            [],
            id="number-1e15-unit-32",
        ),
        pytest.param(
            {"telemetryData": {"currentValue": 1.0000001e15, "threshold": 1, "unit": "c"}},
            [("telemetryData.currentValue", "invalid_field")],
            id="number-above-1e15",
        ),
        pytest.param(
            {"telemetryData": {"currentValue": 1, "threshold": 1, "unit": "u" * 33}},
            [("telemetryData.unit", "invalid_field")],
            id="unit-33",
        ),
        # Ids may hold what separates key parts: escaped in key names, never refused.
        pytest.param({"sensorId": "s-1\n"}, [("sensorId", "invalid_field")], id="id-newline-end"),
        pytest.param({"sensorId": "aa:bb:cc:dd:ee:ff"}, [], id="mac-address-sensor"),
        pytest.param({"sensorId": "Q}:cool:T", "customerId": "SECK}:readings:Q"}, [], id="braces"),
    ],
)
def test_length_and_number_bounds(changes: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    assert _verdict(guide(**changes)) == expected


def test_the_body_bound_is_inclusive() -> None:
    body = orjson.dumps(guide())
    at = body[:-1] + b" " * (LIMITS.max_body_bytes - len(body)) + b"}"
    assert len(at) == LIMITS.max_body_bytes
    assert _verdict(at) == []
    assert _verdict(at[:-1] + b" }") == [("", "too_large")]


@pytest.mark.parametrize(
    "char",
    [
        "\x00",
        "\x1b",
        "\x7f",
        "\x85",
        "\x9f",  # C0, DEL, C1
        "\u202e",
        "\u202a",
        "\u2066",
        "\u2069",
        "\u061c",  # bidi overrides, isolates, marks
        "\u200b",
        "\u200e",
        "\u2028",
        "\u2029",
        "\ufeff",
        "\u2060",
        "\ufff9",
    ],
)
def test_invisible_and_control_characters_are_refused_in_free_text_and_ids(char: str) -> None:
    unit = {"currentValue": 1, "threshold": 2, "unit": f"c{char}°"}
    assert _verdict(guide(telemetryData=unit)) == [("telemetryData.unit", "invalid_field")]
    assert _verdict(guide(severity=f"hi{char}")) == [("severity", "invalid_field")]


@pytest.mark.parametrize("unit", ["°C", "µg/m³", "m/s²", "Ω", "温度", "🌡"])
def test_ordinary_non_ascii_units_pass(unit: str) -> None:
    assert _verdict(guide(telemetryData={"currentValue": 1, "threshold": 2, "unit": unit})) == []


def test_one_problem_rejections_carry_its_reason() -> None:
    result = validate(orjson.dumps(guide(sensorId=None)), now=NOW, limits=LIMITS)
    assert isinstance(result, Rejected)
    assert result.reason == Reason.MISSING_FIELD
    assert result.idempotency_key == _KEY


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"note": "\u202eevil"}, "note"),
        ({"site": {"name": "ok", "tags": ["a", "b\u200bc"]}}, "site"),
        ({"\u202ename": "x"}, "\\u202ename"),  # a member's name shows too
        ({"note": "bell\x07"}, "note"),
        (
            {"telemetryData": {"currentValue": 1, "threshold": 2, "unit": "c", "probe": "\x85"}},
            "telemetryData.probe",
        ),
    ],
)
def test_hidden_characters_are_refused_in_extra_members_too(
    changes: dict[str, Any], field: str
) -> None:
    assert _verdict(guide(**changes)) == [(field, "invalid_field")]


@pytest.mark.parametrize(
    "changes",
    [
        {"note": "two\nlines\tand a tab"},  # whitespace in free text is fine
        {"site": {"name": "Zürich Nord", "tags": ["温度", "°C"]}},
    ],
)
def test_ordinary_text_in_extra_members_passes(changes: dict[str, Any]) -> None:
    assert _verdict(guide(**changes)) == []


# --- what mutation testing found unpinned (scripts/mutate validate) ------------------------


def test_a_problem_is_sent_with_these_three_names() -> None:
    # The 400 body's and the rejected topic's contract (DESIGN.md: problems[field, reason]).
    problem = Problem("telemetryData.unit", Reason.INVALID_FIELD, "longer than 32 characters")
    assert problem.as_json() == {
        "field": "telemetryData.unit",
        "reason": "invalid_field",
        "message": "longer than 32 characters",
    }


def test_the_limits_default_to_the_documented_values() -> None:
    assert Limits() == Limits(
        max_body_bytes=65536,
        max_string_length=128,
        max_future_skew_seconds=300.0,
        max_age_seconds=86400.0,
        max_depth=32,
    )


@pytest.mark.parametrize(
    ("key", "named"),
    [("k" * 128, "k" * 128), ("k" * 129, ""), (42, ""), ("a b", "")],
    ids=["128-kept", "129-dropped", "not-a-string", "not-an-id"],
)
def test_a_too_deep_payload_names_its_key_only_when_it_is_one(key: object, named: str) -> None:
    result = validate(
        orjson.dumps(guide(idempotencyKey=key, x=_nested(40))), now=NOW, limits=LIMITS
    )
    assert isinstance(result, Rejected)
    assert result.idempotency_key == named


def test_a_rejection_without_a_string_key_names_none() -> None:
    result = validate(orjson.dumps(guide(idempotencyKey=42)), now=NOW, limits=LIMITS)
    assert isinstance(result, Rejected)
    assert result.idempotency_key == ""


def test_a_raw_del_in_an_extra_member_is_refused() -> None:
    body = orjson.dumps(guide(note="a\x7fb"))
    assert b"\x7f" in body  # JSON lets DEL through unescaped: the byte scan must see it
    assert _verdict(body) == [("note", "invalid_field")]


@pytest.mark.parametrize(
    ("telemetry", "expected"),
    [
        ({"currentValue": 1, "unit": "c"}, [("telemetryData.threshold", "missing_field")]),
        (
            {"currentValue": 1, "threshold": "x", "unit": "c"},
            [("telemetryData.threshold", "invalid_field")],
        ),
    ],
)
def test_the_threshold_is_checked_like_the_value(
    telemetry: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    assert _verdict(guide(telemetryData=telemetry)) == expected


def test_an_accepted_alert_carries_its_numbers_ids_and_fingerprints() -> None:
    result = validate(orjson.dumps(guide()), now=NOW, limits=LIMITS)
    assert not isinstance(result, Rejected)
    alert, _ = result
    assert (alert.current_value, alert.threshold, alert.unit) == (89.5, 85.0, "celsius")
    assert alert.retained is False  # a live message unless the broker says it was retained
    # Fixed values: a record written by one version is found by the next.
    assert alert.reference_id == reference_id("sensor-evt-89234-1715629384")
    assert (
        alert.reference_id
        == "ref_" + hashlib.blake2b(b"sensor-evt-89234-1715629384", digest_size=10).hexdigest()
    )
    assert len(alert.reference_id) == 4 + 20
    assert len(alert.telemetry_hash) == 16


@pytest.mark.parametrize("value", [Problem("", Reason.INVALID_JSON, "x"), Limits(), Rejected(())])
def test_validations_results_cannot_be_changed(value: object) -> None:
    first = dataclasses.fields(value)[0].name  # type: ignore[arg-type]
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(value, first, None)
