"""Every door locked as configured, operators' pause and resume, metrics and decision logs."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import orjson
import pytest

from tests.conftest import EmulatorHandle, ServiceHandle, alert, http, publish, wait_for
from tripline.pipeline.signature import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

pytestmark = pytest.mark.integration

HMAC_SECRET = "whsec-test"


def signed(body: bytes, *, at: float | None = None, secret: str = HMAC_SECRET) -> dict[str, str]:
    timestamp = int(time.time() if at is None else at)
    return {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: sign(secret, timestamp, body)}


@pytest.fixture
def locked(make_service: Callable[..., ServiceHandle]) -> ServiceHandle:
    return make_service(
        TRIPLINE__HTTP__WEBHOOK_TOKEN="hook-token",
        TRIPLINE__HTTP__WEBHOOK_HMAC_SECRET=HMAC_SECRET,
        TRIPLINE__HTTP__ADMIN_TOKEN="admin-token",
    ).start()


def test_a_signed_webhook_is_accepted_and_a_tampered_or_stale_one_is_not(
    locked: ServiceHandle,
) -> None:
    body = orjson.dumps(alert())
    status, answer = http("POST", f"{locked.url}/v1/alerts", body, signed(body))
    assert status == 202, answer

    other = orjson.dumps(alert())
    for headers, expected in (
        (signed(body), "does not match"),  # someone else's signature
        (signed(other, at=time.time() - 600), "replay window"),
        (signed(other, secret="guess"), "does not match"),
        ({}, "missing"),
    ):
        status, answer = http("POST", f"{locked.url}/v1/alerts", other, headers)
        assert status == 401
        (problem,) = answer["problems"]
        assert expected in problem["message"]
        assert problem["reason"] == "unauthorized"
    # A replay of the good request inside the window is a duplicate, never a second alert.
    status, answer = http("POST", f"{locked.url}/v1/alerts", body, signed(body))
    assert (status, answer["status"]) == (200, "duplicate")
    assert locked.stats.snapshot()["rejected"]["unauthorized"] == 4


def test_the_bearer_token_is_the_alternative_to_a_signature(locked: ServiceHandle) -> None:
    body = orjson.dumps(alert())
    status, _ = http("POST", f"{locked.url}/v1/alerts", body, {"Authorization": "Bearer nope"})
    assert status == 401
    status, _ = http(
        "POST", f"{locked.url}/v1/alerts", body, {"Authorization": "Bearer hook-token"}
    )
    assert status == 202


def test_context_and_admin_doors_need_their_own_tokens(locked: ServiceHandle) -> None:
    for method, path in (
        ("GET", "/v1/context/anything"),
        ("GET", "/v1/admin/dnc"),
        ("POST", "/v1/admin/dialing/pause"),
    ):
        for headers in ({}, {"Authorization": "Bearer hook-token"}):
            status, answer = http(method, f"{locked.url}{path}", headers=headers)
            assert status == 401, path
            assert answer["problems"][0]["field"] == "Authorization"


def test_an_operator_pauses_and_resumes_dialing(
    locked: ServiceHandle, emulator: EmulatorHandle
) -> None:
    admin = {"Authorization": "Bearer admin-token"}
    emulator.add_customer("C-PAUSE")
    status, _ = http("POST", f"{locked.url}/v1/admin/dialing/pause", headers=admin)
    assert status == 200
    doc = alert(customer="C-PAUSE", sensor="PAUSE-1")
    locked.publish(doc, sensor="PAUSE-1")
    wait_for(lambda: (locked.record(doc["idempotencyKey"]) or {}).get("state") == "queued")
    _, state = http("GET", f"{locked.url}/status")
    assert state["dialingPaused"]["by"] == "operator"
    time.sleep(0.5)
    assert locked.outcome(doc["idempotencyKey"]) is None  # held, not dropped
    assert emulator.callbacks() == []
    http("POST", f"{locked.url}/v1/admin/dialing/resume", headers=admin)
    wait_for(lambda: locked.outcome(doc["idempotencyKey"]) == "called")


def test_a_pause_holds_every_instance_and_outlives_a_restart_of_the_dialer(
    make_service: Callable[..., ServiceHandle], emulator: EmulatorHandle, prefix: str
) -> None:
    """The pause is kept in Redis: the button on one instance's dashboard holds them all."""
    admin = {"Authorization": "Bearer admin-token"}
    first = make_service(TRIPLINE__HTTP__ADMIN_TOKEN="admin-token").start()
    topic = f"tt/{prefix}-b/sensors/+/alerts"
    second = make_service(
        TRIPLINE__MQTT__CLIENT_ID=f"tripline-{prefix}-b", TRIPLINE__MQTT__TOPIC=topic
    ).start()
    assert second.service is not None
    emulator.add_customer("C-HOLD")
    assert http("POST", f"{first.url}/v1/admin/dialing/pause", headers=admin)[0] == 200
    wait_for(lambda: http("GET", f"{second.url}/status")[1]["dialingPaused"] is not None)
    assert http("GET", f"{second.url}/status")[1]["dialingPaused"]["by"] == "operator"

    doc = alert(customer="C-HOLD", sensor="HOLD-1")
    publish(topic.replace("+", "HOLD-1"), doc)
    wait_for(lambda: (second.record(doc["idempotencyKey"]) or {}).get("state") == "queued")
    second.service.ref("dialer").stop()  # as if it had died: its replacement starts paused
    wait_for(lambda: http("GET", f"{second.url}/status")[1]["actors"]["dialer"]["restarts"] == 1)
    wait_for(
        lambda: http("GET", f"{second.url}/status")[1]["actors"]["dialer"]["status"] == "running"
    )
    time.sleep(0.5)
    assert second.outcome(doc["idempotencyKey"]) is None  # held, not dropped
    assert emulator.callbacks() == []

    assert http("POST", f"{first.url}/v1/admin/dialing/resume", headers=admin)[0] == 200
    wait_for(lambda: second.outcome(doc["idempotencyKey"]) == "called")
    assert http("GET", f"{second.url}/status")[1]["dialingPaused"] is None


def test_metrics_cover_outcomes_stages_queues_budget_actors_and_health(
    service: ServiceHandle, emulator: EmulatorHandle
) -> None:
    emulator.add_customer("C-METRICS")
    doc = alert(customer="C-METRICS", sensor="MET-1")
    service.publish(doc, sensor="MET-1")
    wait_for(lambda: service.outcome(doc["idempotencyKey"]) == "called")
    status, text = http("GET", f"{service.url}/metrics")
    assert status == 200
    for line in (
        'tripline_alerts_total{outcome="called",reason=""} 1.0',
        'tripline_up{component="redis"} 1.0',
        'tripline_up{component="broker"} 1.0',
        'tripline_actor_up{actor="dialer"} 1.0',
        'tripline_actor_restarts{actor="shard-0"} 0.0',
        'tripline_breaker_open{breaker="backend"} 0.0',
        "tripline_rate_budget_per_minute 240.0",
        'tripline_dialer_queue_depth{priority="critical"} 0.0',
        'tripline_decision_seconds_count{outcome="called"} 1.0',
        "tripline_fleet_incident 0.0",
    ):
        assert line in text, line
    for stage in ("accept", "sensor", "enrich", "dial"):
        assert f'tripline_stage_seconds_count{{stage="{stage}"}}' in text


def test_every_decision_is_one_log_event_with_its_reason_and_no_phone_number(
    service: ServiceHandle, emulator: EmulatorHandle, caplog: pytest.LogCaptureFixture
) -> None:
    customer = emulator.add_customer("C-LOG")
    docs = [alert(customer="C-LOG", sensor="LOG-1") for _ in range(3)]
    with caplog.at_level(logging.INFO, logger="tripline.decision"):
        service.publish(*docs, sensor="LOG-1")
        wait_for(lambda: all(service.outcome(d["idempotencyKey"]) for d in docs))
        wait_for(lambda: len([r for r in caplog.records if r.name == "tripline.decision"]) >= 3)
    events = [r.decision for r in caplog.records if r.name == "tripline.decision"]  # type: ignore[attr-defined]
    by_key = {e["idempotencyKey"]: e for e in events}
    assert {by_key[d["idempotencyKey"]]["outcome"] for d in docs} == {"called", "suppressed"}
    assert [by_key[d["idempotencyKey"]].get("reason") for d in docs[1:]] == ["cooldown"] * 2
    assert len(events) == 3
    _, state = http("GET", f"{service.url}/status")
    assert {d["idempotencyKey"] for d in state["recentDecisions"]} >= set(by_key)
    assert customer["phone"].removeprefix("+") not in caplog.text


def test_an_instance_that_joins_a_shared_group_keeps_its_session_but_not_its_plain_topic(
    make_service: Callable[..., ServiceHandle], emulator: EmulatorHandle
) -> None:
    """Scaling one instance out to several keeps its client id (docs/deployment.md).

    Its persistent session still holds the plain subscription: kept, the broker would hand
    that instance every alert on top of its share.
    """
    make_service().start().stop()  # the session now subscribes the plain topic
    service = make_service(TRIPLINE__MQTT__SHARED_GROUP="scale-out").start()
    emulator.add_customer("C-SCALE")
    doc = alert(customer="C-SCALE")
    service.publish(doc, sensor=doc["sensorId"])
    wait_for(lambda: service.outcome(doc["idempotencyKey"]) == "called")
    time.sleep(0.5)  # a second delivery, if any, arrives meanwhile
    counters = http("GET", f"{service.url}/status")[1]["counters"]
    assert counters["accepted"] == {"-": 1}
    assert "duplicate" not in counters.get("suppressed", {}), counters
