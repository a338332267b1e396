"""Dialer governance against the emulator: rate, 429 storms, occupancy, outages, backends."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import (
    REDIS_URL,
    EmulatorHandle,
    ServiceHandle,
    alert,
    free_port,
    http,
    publish,
    wait_for,
)
from tripline.devtools.emulator import CXONE_APP_SECRET, CXONE_KEY_SECRET, TWILIO_TOKEN

pytestmark = [pytest.mark.integration, pytest.mark.long(40)]

CC_PATHS = ("/oauth/token", "/api/v2/")


def settings(emulator: EmulatorHandle, **knobs: Any) -> None:
    status, body = http("PUT", f"{emulator.url}/_emulator/settings", knobs)
    assert status == 200, body


def cc_requests(emulator: EmulatorHandle) -> list[dict[str, Any]]:
    return [r for r in emulator.requests() if r["path"].startswith(CC_PATHS)]


def max_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] > window:
            start += 1
        best = max(best, end - start + 1)
    return best


def outcomes(service: ServiceHandle, docs: list[dict[str, Any]]) -> list[str | None]:
    return [service.outcome(d["idempotencyKey"]) for d in docs]


def all_decided(service: ServiceHandle, docs: list[dict[str, Any]]) -> bool:
    return None not in outcomes(service, docs)


def test_a_429_storm_loses_no_call_and_never_exceeds_the_rate(
    make_service: Callable[..., ServiceHandle], emulator: EmulatorHandle
) -> None:
    # 120/min with bursts of 3: at most 3 + 2*t requests in any t seconds.
    service = make_service(
        TRIPLINE__DIALER__RATE_PER_MINUTE="120",
        TRIPLINE__DIALER__BURST="3",
        TRIPLINE__DIALER__OCCUPANCY_SOURCE="none",
    ).start()
    settings(emulator, rate_limit_per_minute=4, retry_after_seconds=1)
    docs = [alert(customer=f"C-{n}", sensor=f"S-{n}") for n in range(8)]
    for n in range(8):
        emulator.add_customer(f"C-{n}")
    for doc in docs:
        service.publish(doc, sensor=doc["sensorId"])
    wait_for(lambda: sum(r["status"] == 429 for r in emulator.requests()) >= 3)
    settings(emulator, rate_limit_per_minute=0)

    wait_for(lambda: all_decided(service, docs), timeout=30)
    assert outcomes(service, docs) == ["called"] * 8
    refs = [c["body"]["data"]["referenceId"] for c in emulator.callbacks()]
    assert len(refs) == len(set(refs)) == 8  # one call each
    times = [r["at"] for r in cc_requests(emulator)]
    for window in (0.5, 1.0, 2.0, 4.0):
        assert max_in_window(times, window) <= 3 + 2 * window + 1  # +1: clock granularity


def test_occupancy_holds_normal_work_while_critical_dials(
    make_service: Callable[..., ServiceHandle], emulator: EmulatorHandle
) -> None:
    emulator.add_customer("C-OCC")
    settings(emulator, occupancy=0.9)
    service = make_service(TRIPLINE__DIALER__OCCUPANCY_POLL_SECONDS="0.5").start()
    normal = alert(customer="C-OCC", sensor="S-normal", alert_type="door_open")
    low = alert(customer="C-OCC", sensor="S-low", alert_type="battery_low")
    critical = alert(customer="C-OCC", sensor="S-crit", alert_type="temp_critical")
    for doc in (normal, low, critical):
        service.publish(doc, sensor=doc["sensorId"])
    wait_for(lambda: service.outcome(critical["idempotencyKey"]) == "called")
    status = http("GET", f"{service.url}/status")[1]
    assert status["occupancy"]["occupancy"] == pytest.approx(0.9), status["occupancy"]["detail"]
    assert service.record(normal["idempotencyKey"])["state"] == "queued"  # type: ignore[index]
    assert service.record(low["idempotencyKey"])["state"] == "queued"  # type: ignore[index]

    settings(emulator, occupancy=0.97)  # saturated: low work becomes a task, normal still waits
    wait_for(lambda: service.outcome(low["idempotencyKey"]) == "deferred")
    assert service.record(low["idempotencyKey"])["reason"] == "queue_saturated"  # type: ignore[index]
    assert service.outcome(normal["idempotencyKey"]) is None

    settings(emulator, occupancy=0.5)
    wait_for(lambda: service.outcome(normal["idempotencyKey"]) == "called")


def test_a_failed_poll_holds_non_critical_and_never_blocks_critical(
    make_service: Callable[..., ServiceHandle], emulator: EmulatorHandle
) -> None:
    emulator.add_customer("C-POLL")
    service = make_service(
        TRIPLINE__DIALER__OCCUPANCY_SOURCE="genesys", TRIPLINE__GENESYS__QUEUE_ID=""
    ).start()  # the poll gets a 400
    normal = alert(customer="C-POLL", sensor="S-n", alert_type="door_open")
    critical = alert(customer="C-POLL", sensor="S-c")
    for doc in (normal, critical):
        service.publish(doc, sensor=doc["sensorId"])
    wait_for(lambda: service.outcome(critical["idempotencyKey"]) is not None)
    # critical was dialed (the emulator refuses the empty queue id: dial_failed, but it went)
    assert emulator.requests("/api/v2/conversations/callbacks")
    assert http("GET", f"{service.url}/status")[1]["occupancy"]["ok"] is False
    assert service.outcome(normal["idempotencyKey"]) is None


def test_backend_outage_opens_the_breaker_and_loses_nothing(
    make_service: Callable[..., ServiceHandle], emulator: EmulatorHandle
) -> None:
    service = make_service(
        TRIPLINE__DIALER__OCCUPANCY_SOURCE="none",
        TRIPLINE__DIALER__MAX_RETRIES="1",
        TRIPLINE__DIALER__BREAKER_THRESHOLD="2",
        TRIPLINE__DIALER__BREAKER_COOL_OFF_SECONDS="1",
    ).start()
    docs = [alert(customer=f"C-out-{n}", sensor=f"S-out-{n}") for n in range(5)]
    for n in range(5):
        emulator.add_customer(f"C-out-{n}")
    settings(emulator, failure_status=503)
    for doc in docs:
        service.publish(doc, sensor=doc["sensorId"])
    wait_for(lambda: http("GET", f"{service.url}/status")[1]["backendBreaker"] != "closed")
    assert set(outcomes(service, docs)) == {None}  # nothing decided, nothing dropped

    settings(emulator, failure_status=0)
    wait_for(lambda: all_decided(service, docs), timeout=20)
    assert outcomes(service, docs) == ["called"] * 5
    assert len(emulator.callbacks()) == 5


def test_non_critical_work_goes_to_the_campaign_in_batches(
    make_service: Callable[..., ServiceHandle], emulator: EmulatorHandle
) -> None:
    service = make_service(
        TRIPLINE__DIALER__BACKENDS='{ normal = "genesys_campaign" }',
        TRIPLINE__DIALER__CAMPAIGN_BATCH_SECONDS="0.5",
        TRIPLINE__DIALER__OCCUPANCY_SOURCE="none",
    ).start()
    docs = [alert(customer=f"C-b-{n}", sensor=f"S-b-{n}", alert_type="door_open") for n in range(6)]
    for n in range(6):
        emulator.add_customer(f"C-b-{n}")
    for doc in docs:
        service.publish(doc, sensor=doc["sensorId"])
    wait_for(lambda: all_decided(service, docs), timeout=15)
    assert outcomes(service, docs) == ["called"] * 6
    posts = [r for r in emulator.requests() if "/contacts" in r["path"] and r["status"] == 200]
    assert 1 <= len(posts) < 6  # batched
    contacts = [c for p in posts for c in p["body"]]
    assert len(contacts) == 6
    references = {(service.record(d["idempotencyKey"]) or {}).get("referenceId") for d in docs}
    assert {c["data"]["referenceId"] for c in contacts} == references
    assert all(p["query"]["priority"] == "false" for p in posts)
    assert emulator.callbacks() == []


def test_cxone_and_twilio_backends(
    make_service: Callable[..., ServiceHandle], emulator: EmulatorHandle
) -> None:
    emulator.add_customer("C-X", phone="+14155550100")
    service = make_service(
        TRIPLINE__DIALER__BACKENDS='{ critical = "cxone", high = "twilio" }',
        TRIPLINE__CXONE__DISCOVERY_URL=emulator.url,
        TRIPLINE__CXONE__ACCESS_KEY_SECRET=CXONE_KEY_SECRET,
        TRIPLINE__CXONE__CLIENT_SECRET=CXONE_APP_SECRET,
        TRIPLINE__TWILIO__BASE_URL=emulator.url,
        TRIPLINE__TWILIO__AUTH_TOKEN=TWILIO_TOKEN,
    ).start()
    critical = alert(customer="C-X", sensor="S-x1", alert_type="temp_critical")
    high = alert(customer="C-X", sensor="S-x2", alert_type="flood")
    for doc in (critical, high):
        service.publish(doc, sensor=doc["sensorId"])
    wait_for(lambda: all_decided(service, [critical, high]), timeout=15)
    assert outcomes(service, [critical, high]) == ["called", "called"]
    (start,) = [r for r in emulator.requests() if r["path"].endswith("/start")]
    reference = service.record(critical["idempotencyKey"])["referenceId"]  # type: ignore[index]
    assert start["body"]["skillId"] == service.config.cxone.skill_id
    assert start["body"]["parameters"].split("|") == [
        "+14155550100",
        "S-x1",
        "temp_critical",
        reference,
    ]
    (call,) = [r for r in emulator.requests() if r["path"].endswith("/Calls.json")]
    assert call["body"]["To"] == "+14155550100"
    assert "referenceId=" in call["body"]["Url"]
    assert http("GET", f"{service.url}/status")[1]["occupancy"]["ok"] is True  # CXone activity


def test_a_pipe_in_the_sensor_id_shifts_no_cxone_parameter(
    make_service: Callable[..., ServiceHandle], emulator: EmulatorHandle
) -> None:
    emulator.add_customer("C-P", phone="+14155550101")
    service = make_service(
        TRIPLINE__DIALER__BACKEND="cxone",
        TRIPLINE__CXONE__DISCOVERY_URL=emulator.url,
        TRIPLINE__CXONE__ACCESS_KEY_SECRET=CXONE_KEY_SECRET,
        TRIPLINE__CXONE__CLIENT_SECRET=CXONE_APP_SECRET,
    ).start()
    sensor = "S|x%7C|y"  # a valid id: printable ASCII; an escape look-alike too
    doc = alert(customer="C-P", sensor=sensor, alert_type="temp_critical")
    service.publish(doc, sensor="S-pipe")
    wait_for(lambda: all_decided(service, [doc]), timeout=15)
    assert outcomes(service, [doc]) == ["called"]
    reference = service.record(doc["idempotencyKey"])["referenceId"]  # type: ignore[index]
    (start,) = [r for r in emulator.requests() if r["path"].endswith("/start")]
    # CXone splits at every `|`: four parameters, the sensorId's pipes escaped inside p2.
    assert start["body"]["parameters"].split("|") == [
        "+14155550101",
        "S%7Cx%257C%7Cy",
        "temp_critical",
        reference,
    ]
    # What the Studio script reads once it has unescaped each pN (docs/cxone.md, section 2).
    (call,) = emulator.state.calls["cxone"].values()
    assert call.extra["parameters"] == ["+14155550101", sensor, "temp_critical", reference]
    assert call.phone == "+14155550101"


def test_two_processes_share_one_budget(prefix: str, emulator: EmulatorHandle) -> None:
    topic = f"tt/{prefix}"
    for n in range(12):
        emulator.add_customer(f"C-two-{n}")
    procs = []
    for n in range(2):
        env = {
            **os.environ,
            "TRIPLINE__HTTP__PORT": str(free_port()),
            "TRIPLINE__REDIS__URL": REDIS_URL,
            "TRIPLINE__REDIS__KEY_PREFIX": prefix,
            "TRIPLINE__MQTT__CLIENT_ID": f"tripline-{prefix}-{n}",
            "TRIPLINE__MQTT__SHARED_GROUP": prefix,
            "TRIPLINE__MQTT__TOPIC": f"{topic}/sensors/+/alerts",
            "TRIPLINE__GENESYS__BASE_URL": emulator.url,
            "TRIPLINE__GENESYS__LOGIN_URL": emulator.url,
            "TRIPLINE__GENESYS__CLIENT_SECRET": "demo-secret",
            "TRIPLINE__CRM__BASE_URL": emulator.url,
            "TRIPLINE__CRM__SYNC_INTERVAL_SECONDS": "0",
            "TRIPLINE__DIALER__RATE_PER_MINUTE": "60",
            "TRIPLINE__DIALER__BURST": "2",
            "TRIPLINE__DIALER__OCCUPANCY_SOURCE": "none",
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "tripline.edge.cli", "run", "--workers", "1"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        wait_for(functools.partial(_ready, env["TRIPLINE__HTTP__PORT"]), timeout=20, interval=0.1)
    try:
        docs = [alert(customer=f"C-two-{n}", sensor=f"S-two-{n}") for n in range(12)]
        for doc in docs:
            publish(f"{topic}/sensors/{doc['sensorId']}/alerts", doc)
        wait_for(lambda: len(emulator.callbacks()) == 12, timeout=40)
        times = [r["at"] for r in cc_requests(emulator)]
        # One budget of 1/s with bursts of 2 for both processes together (two tokens included).
        for window in (1.0, 3.0, 6.0):
            assert max_in_window(times, window) <= 2 + window + 1
        assert len({c["body"]["data"]["referenceId"] for c in emulator.callbacks()}) == 12
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=20)


def _ready(port: str) -> bool:
    try:
        return http("GET", f"http://127.0.0.1:{port}/readyz")[0] == 200
    except OSError:
        return False
