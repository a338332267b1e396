"""Timelines on real Mosquitto and Redis, with the emulator as contact center and CRM."""

from __future__ import annotations

import functools
from collections.abc import Callable

import pytest

from tests.conftest import (
    EmulatorHandle,
    Listener,
    ServiceHandle,
    alert,
    http,
    wait_for,
    zone_outside_window,
)

pytestmark = pytest.mark.integration


def test_guide_payload_over_mqtt_becomes_exactly_one_callback(
    service: ServiceHandle, emulator: EmulatorHandle
) -> None:
    emulator.add_customer("CUST-9981", phone="+1 (415) 555-0100", name="Freezer Site 9981")
    doc = alert()
    service.publish(doc, sensor=doc["sensorId"])

    wait_for(lambda: service.outcome(doc["idempotencyKey"]) == "called")
    (call,) = emulator.callbacks()
    body = call["body"]
    assert body["callbackNumbers"] == ["+14155550100"]  # normalised to E.164
    assert body["callbackUserName"] == "Freezer Site 9981"
    assert body["routingData"]["queueId"] == service.config.genesys.queue_id
    assert body["routingData"]["priority"] == service.config.priorities.routing["critical"]
    record = service.record(doc["idempotencyKey"])
    assert record is not None
    assert body["data"] == {
        "sensorId": "TEMP-SNS-4421",
        "alertType": "temp_critical",
        "referenceId": record["referenceId"],
        "telemetryHash": record["telemetryHash"],
    }
    assert all(len(v) <= 255 for v in body["data"].values())
    assert [h["state"] for h in record["history"]] == ["accepted", "queued", "dialing", "called"]
    assert record["callId"]
    # OAuth once, then the callback: the token is cached.
    assert len(emulator.requests("/oauth/token")) == 1


def test_same_key_published_five_times_is_called_once(
    service: ServiceHandle, emulator: EmulatorHandle
) -> None:
    emulator.add_customer("CUST-9981")
    doc = alert()
    service.publish(*[doc] * 5, sensor=doc["sensorId"])

    wait_for(lambda: service.outcome(doc["idempotencyKey"]) == "called")
    stats = service.stats
    wait_for(lambda: stats.snapshot()["suppressed"].get("duplicate") == 4)
    assert len(emulator.callbacks()) == 1


def test_ten_alerts_of_one_sensor_inside_cooldown_give_one_call(
    service: ServiceHandle, emulator: EmulatorHandle
) -> None:
    emulator.add_customer("CUST-9981")
    docs = [alert(sensor="VIB-1") for _ in range(10)]
    service.publish(*docs, sensor="VIB-1")

    outcomes = wait_for(
        lambda: (o := [service.outcome(d["idempotencyKey"]) for d in docs]) and None not in o and o
    )
    assert outcomes.count("called") == 1
    assert outcomes.count("suppressed") == 9
    reasons = {service.record(d["idempotencyKey"])["reason"] for d in docs[1:]}  # type: ignore[index]
    assert reasons == {"cooldown"}
    assert len(emulator.callbacks()) == 1


INVALID = [
    pytest.param(b"{nope", [("", "invalid_json")], id="not-json"),
    pytest.param(b"[1, 2]", [("", "invalid_json")], id="not-an-object"),
    pytest.param(
        {"sensorId": "S-1"},
        [
            ("idempotencyKey", "missing_field"),
            ("customerId", "missing_field"),
            ("alertType", "missing_field"),
            ("timestamp", "missing_field"),
            ("telemetryData", "missing_field"),
        ],
        id="missing-fields-each-named",
    ),
    pytest.param(
        alert(timestamp="2024-05-13T14:32:00"), [("timestamp", "invalid_field")], id="naive-time"
    ),
    pytest.param(
        alert(telemetryData={"currentValue": "hot", "threshold": 85.0, "unit": "c"}),
        [("telemetryData.currentValue", "invalid_field")],
        id="non-numeric-reading",
    ),
    pytest.param(alert(sensorId="x" * 500), [("sensorId", "invalid_field")], id="too-long-id"),
    pytest.param(alert(status="maybe"), [("status", "invalid_field")], id="unknown-status"),
]


@pytest.mark.parametrize(("payload", "expected"), INVALID)
def test_invalid_payload_is_reported_on_rejected_topic_and_nothing_else_is_affected(
    service: ServiceHandle,
    emulator: EmulatorHandle,
    payload: bytes | dict[str, object],
    expected: list[tuple[str, str]],
) -> None:
    emulator.add_customer("CUST-9981")
    listener = Listener(service.config.mqtt.rejected_topic)
    good = alert()
    try:
        service.publish(payload, good, sensor="S-1")
        reports = wait_for(lambda: listener.messages)
    finally:
        listener.close()
    (report,) = reports
    assert report["error"] == "invalid_alert"
    assert [(p["field"], p["reason"]) for p in report["problems"]] == expected
    assert all(p["message"] for p in report["problems"])
    wait_for(lambda: service.outcome(good["idempotencyKey"]) == "called")


@pytest.mark.parametrize(("payload", "expected"), INVALID)
def test_invalid_payload_over_http_is_a_400_naming_each_field(
    service: ServiceHandle, payload: bytes | dict[str, object], expected: list[tuple[str, str]]
) -> None:
    status, body = http("POST", f"{service.url}/v1/alerts", payload)
    assert status == 400
    assert body["error"] == "invalid_alert"
    assert [(p["field"], p["reason"]) for p in body["problems"]] == expected


def test_webhook_accepts_then_answers_duplicates_with_200(
    service: ServiceHandle, emulator: EmulatorHandle
) -> None:
    emulator.add_customer("CUST-9981")
    doc = alert()
    status, body = http("POST", f"{service.url}/v1/alerts", doc)
    assert status == 202
    assert body["status"] == "accepted"
    status, again = http("POST", f"{service.url}/v1/alerts", doc)
    assert status == 200
    assert again["status"] == "duplicate"
    wait_for(lambda: service.outcome(doc["idempotencyKey"]) == "called")
    assert len(emulator.callbacks()) == 1

    status, ctx = http(
        "GET",
        f"{service.url}/v1/context/{body['referenceId']}",
        headers={"Authorization": "Bearer ctx-token"},
    )
    assert status == 200
    assert ctx["alert"]["telemetryData"] == doc["telemetryData"]
    status, _ = http("GET", f"{service.url}/v1/context/{body['referenceId']}")
    assert status == 401


def test_oversized_body_is_413_and_unknown_record_is_404(service: ServiceHandle) -> None:
    big = b'{"pad": "' + b"x" * 70_000 + b'"}'
    status, body = http("POST", f"{service.url}/v1/alerts", big)
    assert status == 413
    assert body["problems"][0]["reason"] == "too_large"
    status, body = http("GET", f"{service.url}/v1/alerts/never-seen")
    assert status == 404


def test_a_429_delays_the_call_but_does_not_lose_it(
    service: ServiceHandle, emulator: EmulatorHandle
) -> None:
    emulator.add_customer("CUST-9981")
    # The token uses one request of the budget, the callback the next: it gets a 429.
    http(
        "PUT",
        f"{emulator.url}/_emulator/settings",
        {"rate_limit_per_minute": 1, "retry_after_seconds": 1},
    )
    doc = alert()
    service.publish(doc, sensor=doc["sensorId"])
    wait_for(lambda: any(r["status"] == 429 for r in emulator.requests()))
    http("PUT", f"{emulator.url}/_emulator/settings", {"rate_limit_per_minute": 0})

    wait_for(lambda: service.outcome(doc["idempotencyKey"]) == "called", timeout=15)
    assert len(emulator.callbacks()) == 1
    history = [h["state"] for h in service.record(doc["idempotencyKey"])["history"]]  # type: ignore[index]
    assert history.count("dialing") == 2  # sent, refused with 429, queued, sent again


def test_customer_flags_and_unknown_customers_become_tasks_not_calls(
    service: ServiceHandle, emulator: EmulatorHandle
) -> None:
    emulator.add_customer("C-DNC", doNotCall=True)
    emulator.add_customer("C-DND", doNotDisturb=True)
    emulator.add_customer("C-NIGHT", timezone=zone_outside_window())
    cases = {
        "C-DNC": "do_not_call",
        "C-DND": "do_not_disturb",
        "C-NOBODY": "no_contact",
        "C-NIGHT": "outside_calling_window",
    }
    docs = {c: alert(customer=c, sensor=f"S-{c}") for c in cases}
    for customer, doc in docs.items():
        service.publish(doc, sensor=f"S-{customer}")

    def task_raised(key: str) -> bool:
        return bool((service.record(key) or {}).get("taskId"))

    for customer, reason in cases.items():
        key = docs[customer]["idempotencyKey"]
        wait_for(functools.partial(task_raised, key))
        record = service.record(key)
        assert record is not None
        assert (record["outcome"], record["reason"]) == ("deferred", reason)
    assert emulator.callbacks() == []
    assert len(emulator.workitems()) == 4


def test_restart_mid_stream_keeps_idempotency_and_cooldown(
    make_service: Callable[..., ServiceHandle], emulator: EmulatorHandle
) -> None:
    emulator.add_customer("CUST-9981")
    first = make_service().start()
    before = [alert(sensor="RST-1") for _ in range(3)]
    first.publish(*before, sensor="RST-1")
    wait_for(lambda: all(first.outcome(d["idempotencyKey"]) for d in before))
    first.stop()

    second = make_service().start()
    after = [alert(sensor="RST-1") for _ in range(3)]
    second.publish(*before, *after, sensor="RST-1")  # re-delivery of the old ones, then new ones
    wait_for(lambda: all(second.outcome(d["idempotencyKey"]) for d in after))
    assert {second.outcome(d["idempotencyKey"]) for d in after} == {"suppressed"}
    assert {second.record(d["idempotencyKey"])["reason"] for d in after} == {"cooldown"}  # type: ignore[index]
    stats = second.stats
    wait_for(lambda: stats.snapshot()["suppressed"].get("duplicate") == 3)
    assert len(emulator.callbacks()) == 1


def test_status_health_and_metrics(service: ServiceHandle) -> None:
    status, body = http("GET", f"{service.url}/status")
    assert status == 200
    assert body["actors"]["dialer"]["status"] == "running"
    assert set(body["queueDepth"]) == {"critical", "high", "normal", "low"}
    assert http("GET", f"{service.url}/healthz")[0] == 200
    status, ready = http("GET", f"{service.url}/readyz")
    assert (status, ready) == (200, {"ready": True, "redis": True, "broker": True})
    status, text = http("GET", f"{service.url}/metrics")
    assert status == 200
    assert "tripline_alerts_total" in text


def test_a_timeout_after_sending_is_never_resent(
    make_service: Callable[..., ServiceHandle], emulator: EmulatorHandle
) -> None:
    emulator.add_customer("CUST-9981")
    service = make_service(TRIPLINE__DIALER__REQUEST_TIMEOUT_SECONDS="0.5").start()
    http("PUT", f"{emulator.url}/_emulator/settings", {"hang_after_receiving": True})
    doc = alert()
    service.publish(doc, sensor=doc["sensorId"])

    wait_for(lambda: service.outcome(doc["idempotencyKey"]) == "deferred")
    record = service.record(doc["idempotencyKey"])
    assert record is not None
    assert record["reason"] == "dial_uncertain"
    wait_for(lambda: (service.record(doc["idempotencyKey"]) or {}).get("taskId"))
    assert len(emulator.requests("/api/v2/conversations/callbacks")) == 1
    assert len(emulator.workitems()) == 1
