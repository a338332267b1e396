"""Issue #16's reproductions, end to end: one crafted message must not stop a single call.

Each test sends what once stopped every call, then a valid critical alert that must be called,
with no actor restarted.
"""

from __future__ import annotations

import orjson
import pytest
import redis

from tests.conftest import EmulatorHandle, Listener, ServiceHandle, alert, http, wait_for
from tripline.adapters.store import Keys

pytestmark = pytest.mark.integration


def _restarts(service: ServiceHandle) -> dict[str, int]:
    _, status = http("GET", f"{service.url}/status")
    return {name: actor["restarts"] for name, actor in status["actors"].items()}


def _critical_is_called(service: ServiceHandle, emulator: EmulatorHandle) -> None:
    emulator.add_customer("CUST-AFTER")
    doc = alert(sensor="S-AFTER", customer="CUST-AFTER", alert_type="temp_critical")
    service.publish(doc, sensor="S-AFTER")
    wait_for(lambda: service.outcome(doc["idempotencyKey"]) == "called")
    assert set(_restarts(service).values()) == {0}
    assert http("GET", f"{service.url}/healthz")[0] == 200


def test_a_payload_nested_300_deep_is_rejected_and_the_next_critical_alert_is_called(
    service: ServiceHandle, emulator: EmulatorHandle
) -> None:
    # orjson reads 1,024 levels but writes 254: recording its context raised, the subscriber
    # died five times in a second and the broker handed the message back after every restart.
    deep = alert(key="deep1", sensor="S1", customer="CUST-DEMO-1", alert_type="temp_high")
    body = (
        b'{"x":'
        + b"[" * 300
        + b"]" * 300
        + b","
        + orjson.dumps(deep)[1:]  # the alert's own fields after "x"
    )
    rejected = Listener(service.config.mqtt.rejected_topic)
    try:
        service.publish(body, sensor="S1")
        report = wait_for(lambda: [m for m in rejected.messages if m["idempotencyKey"] == "deep1"])
    finally:
        rejected.close()
    assert report[0]["problems"][0]["reason"] == "invalid_field"
    assert "nested deeper" in report[0]["problems"][0]["message"]
    status, answer = http("POST", f"{service.url}/v1/alerts", body=body)
    assert status == 400
    assert answer["problems"][0]["reason"] == "invalid_field"
    _critical_is_called(service, emulator)


def test_ids_that_once_collided_in_redis_keys_are_each_decided(
    service: ServiceHandle, emulator: EmulatorHandle
) -> None:
    # Sensor 'Q}:cool:T' of 'SECK' wrote its readings where sensor 'T' of 'SECK}:readings:Q'
    # kept its cooldown: WRONGTYPE killed the shard, and every later alert stayed 'accepted'.
    emulator.add_customer("SECK")
    emulator.add_customer("SECK}:readings:Q")
    first = alert(sensor="Q}:cool:T", customer="SECK", alert_type="temp_high")
    second = alert(sensor="T", customer="SECK}:readings:Q", alert_type="temp_high")
    for doc in (first, second):
        assert http("POST", f"{service.url}/v1/alerts", body=doc)[0] == 202
    keys = [first["idempotencyKey"], second["idempotencyKey"]]
    wait_for(lambda: [service.outcome(k) for k in keys] == ["called", "called"])
    _critical_is_called(service, emulator)


def test_a_key_reused_for_another_alert_is_a_409_and_a_report_and_the_record_stays(
    service: ServiceHandle, emulator: EmulatorHandle
) -> None:
    emulator.add_customer("CUST-9981")
    doc = alert(sensor="S-ORIG")
    assert http("POST", f"{service.url}/v1/alerts", body=doc)[0] == 202
    status, answer = http("POST", f"{service.url}/v1/alerts", body={**doc, "sensorId": "S-X"})
    assert status == 409
    assert answer["error"] == "conflict"
    assert [p["field"] for p in answer["problems"]] == ["sensorId"]
    rejected = Listener(service.config.mqtt.rejected_topic)
    try:
        service.publish({**doc, "alertType": "flood"}, sensor="S-ORIG")
        report = wait_for(lambda: [m for m in rejected.messages if m["error"] == "conflict"])
    finally:
        rejected.close()
    assert report[0]["idempotencyKey"] == doc["idempotencyKey"]
    assert http("POST", f"{service.url}/v1/alerts", body=doc)[0] == 200  # identical: duplicate
    record = service.record(doc["idempotencyKey"])
    assert record is not None
    assert (record["sensorId"], record["alertType"]) == ("S-ORIG", "temp_critical")
    assert service.stats.snapshot()["rejected"]["conflict"] == 2


def test_an_alert_whose_keys_break_gets_a_task_and_a_dead_letter_and_nothing_stops(
    service: ServiceHandle, emulator: EmulatorHandle, redis_client: redis.Redis
) -> None:
    emulator.add_customer("CUST-BROKEN")
    keys = Keys(service.prefix)
    # Something else holds the sensor's cooldown key (an operator's mistake, an old version):
    # deciding this alert fails on its own keys, every time.
    redis_client.rpush(keys.cooldown("CUST-BROKEN", "S-BROKEN"), "not a cooldown")
    doc = alert(sensor="S-BROKEN", customer="CUST-BROKEN", alert_type="temp_high")
    service.publish(doc, sensor="S-BROKEN")
    # The task's id is added to the record once the task is created, after the outcome.
    record = wait_for(lambda: (r := service.record(doc["idempotencyKey"])) and "taskId" in r and r)
    assert record["reason"] == "internal_error"
    assert "WRONGTYPE" in record["detail"]
    assert record["taskId"]
    entries: list[tuple[bytes, dict[bytes, bytes]]] = redis_client.xrange(  # type: ignore[assignment]
        keys.dead_letters()
    )
    ((_, fields),) = entries
    assert fields[b"idempotencyKey"] == doc["idempotencyKey"].encode()
    _, status = http("GET", f"{service.url}/status")
    assert status["deadLetters"]["quarantined"] == {"shard": 1}
    _critical_is_called(service, emulator)
