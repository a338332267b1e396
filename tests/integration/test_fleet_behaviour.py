"""Flapping, resolved-before-dial, per-customer grouping and a bounded storm, on the real stack."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.conftest import BROKER, EmulatorHandle, Listener, ServiceHandle, alert, http, wait_for
from tripline.adapters.mqtt_io import stop_network

pytestmark = [pytest.mark.integration, pytest.mark.long(45)]


def stamped(at: float, **fields: Any) -> dict[str, Any]:
    """An alert whose timestamp carries milliseconds (order within a second matters here)."""
    doc = alert(**fields)
    doc["timestamp"] = datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")
    return doc


def calls_to(emulator: EmulatorHandle, phone: str) -> list[dict[str, Any]]:
    return [c for c in emulator.callbacks() if c["body"]["callbackNumbers"] == [phone]]


def test_a_transient_low_alert_is_never_called_and_a_lasting_one_is(
    make_service: Callable[..., ServiceHandle], emulator: EmulatorHandle
) -> None:
    service = make_service(
        TRIPLINE__DIALER__PENDING_SECONDS="{ critical = 0, high = 0, normal = 0, low = 2 }"
    ).start()
    transient = emulator.add_customer("C-TRANSIENT")
    lasting = emulator.add_customer("C-LASTING")
    now = time.time()
    up = stamped(now, sensor="BAT-1", customer="C-TRANSIENT", alert_type="battery_low")
    down = stamped(
        now + 0.5,
        sensor="BAT-1",
        customer="C-TRANSIENT",
        alert_type="battery_low",
        status="resolved",
    )
    stays = stamped(now, sensor="BAT-2", customer="C-LASTING", alert_type="battery_low")
    service.publish(up, sensor="BAT-1")
    service.publish(stays, sensor="BAT-2")
    time.sleep(0.5)
    service.publish(down, sensor="BAT-1")

    wait_for(lambda: service.outcome(stays["idempotencyKey"]) == "called")
    wait_for(lambda: service.outcome(up["idempotencyKey"]) is not None)
    record = service.record(up["idempotencyKey"])
    assert record is not None
    assert (record["outcome"], record["reason"]) == ("suppressed", "resolved")
    assert down["idempotencyKey"] in record["detail"]
    time.sleep(2.5)  # past the pending delay: still no call
    assert calls_to(emulator, transient["phone"]) == []
    assert len(calls_to(emulator, lasting["phone"])) == 1


def test_a_flapping_sensor_gets_one_maintenance_task_and_no_call_per_toggle(
    make_service: Callable[..., ServiceHandle], emulator: EmulatorHandle, prefix: str
) -> None:
    events_topic = f"tt/{prefix}/events"
    service = make_service(
        TRIPLINE__DIALER__PENDING_SECONDS="{ critical = 0, high = 0, normal = 0, low = 2 }",
        TRIPLINE__MQTT__EVENTS_TOPIC=events_topic,
    ).start()
    listener = Listener(events_topic)
    customer = emulator.add_customer("C-FLAP")
    start = time.time()
    docs = [
        stamped(
            start + 0.2 * n,
            sensor="FLAP-1",
            customer="C-FLAP",
            alert_type="battery_low",
            status="firing" if n % 2 == 0 else "resolved",
        )
        for n in range(20)
    ]
    for doc in docs:
        service.publish(doc, sensor="FLAP-1")
        time.sleep(0.05)
    try:
        wait_for(lambda: all(service.outcome(d["idempotencyKey"]) for d in docs), timeout=15)
        wait_for(lambda: len(emulator.workitems()) == 1)
        wait_for(lambda: [m["type"] for m in listener.messages] == ["flapping_started"])
    finally:
        listener.close()
    reasons = Counter(
        (r["outcome"], r.get("reason")) for d in docs if (r := service.record(d["idempotencyKey"]))
    )
    # The 6th change crosses 30 %: from then on every alert is suppressed/flapping.
    assert reasons[("suppressed", "flapping")] == 15
    assert reasons[("called", None)] == 0
    (task,) = emulator.workitems()
    assert task["body"]["name"].startswith("flapping:")
    assert listener.messages[0]["sensorId"] == "FLAP-1"
    time.sleep(2.5)
    assert calls_to(emulator, customer["phone"]) == []


def test_three_sensors_of_one_customer_give_one_call_listing_all_three(
    make_service: Callable[..., ServiceHandle], emulator: EmulatorHandle
) -> None:
    service = make_service(
        TRIPLINE__DIALER__GROUP_WINDOW_SECONDS="60",
        TRIPLINE__DIALER__PENDING_SECONDS="{ critical = 0, high = 0, normal = 1, low = 1 }",
    ).start()
    customer = emulator.add_customer("C-GROUP")
    docs = [alert(sensor=f"DOOR-{n}", customer="C-GROUP", alert_type="door_open") for n in range(3)]
    for doc in docs:
        service.publish(doc, sensor=doc["sensorId"])

    wait_for(lambda: all(service.outcome(d["idempotencyKey"]) for d in docs))
    records = [service.record(d["idempotencyKey"]) for d in docs]
    (called,) = [r for r in records if r and r["outcome"] == "called"]
    grouped = [r for r in records if r and r.get("reason") == "grouped"]
    assert len(grouped) == 2
    assert {r["groupedInto"] for r in grouped} == {called["idempotencyKey"]}
    assert len(calls_to(emulator, customer["phone"])) == 1
    status, context = http(
        "GET",
        f"{service.url}/v1/context/{called['referenceId']}",
        headers={"Authorization": "Bearer ctx-token"},
    )
    assert status == 200
    assert sorted(a["sensorId"] for a in context["groupedAlerts"]) == sorted(
        r["sensorId"] for r in grouped
    )


def service_threads() -> int:
    """Threads of the service under test, not of this test's own helpers or the HTTP pool.

    The HTTP side's default executor is bounded by asyncio (min(32, cores + 4)); the test's
    sampler and publisher are not the service's.
    """
    ours = {threading.main_thread()}
    return sum(
        1
        for t in threading.enumerate()
        if t not in ours and not t.name.startswith(("asyncio_", "test-", "paho-mqtt-client-"))
    )


def publish_many(
    topic_root: str, docs: list[dict[str, Any]], taken: Callable[[], int], ahead: int = 800
) -> None:
    """Publish a storm at QoS 1 from one connection, waiting for the broker's acks at the end.

    At most `ahead` alerts beyond what the service has `taken` so far: the machine's Mosquitto
    runs with its default `max_queued_messages` of 1,000 and drops what a subscriber has not
    taken beyond that (docs/deployment.md asks production brokers for far more).
    """
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(1000)
    client.connect(*BROKER)
    client.loop_start()
    try:
        infos = []
        for n, d in enumerate(docs):
            if n % 100 == 0:

                def caught_up(sent: int = n) -> bool:
                    return sent - taken() < ahead

                wait_for(caught_up, timeout=30)
            topic = f"{topic_root}/sensors/{d['sensorId']}/alerts"
            infos.append(client.publish(topic, orjson.dumps(d), qos=1))
        for info in infos:
            info.wait_for_publish(timeout=30)
    finally:
        client.disconnect()
        stop_network(client)


def test_a_storm_of_distinct_sensors_stays_bounded_and_opens_a_fleet_incident(
    make_service: Callable[..., ServiceHandle], emulator: EmulatorHandle, prefix: str
) -> None:
    events_topic = f"tt/{prefix}/events"
    service = make_service(
        TRIPLINE__SENSOR__MAX_ENTITIES="400",
        TRIPLINE__FLEET__INCIDENT_SENSORS="500",
        TRIPLINE__MQTT__EVENTS_TOPIC=events_topic,
        TRIPLINE__TASKS__BACKEND='"log"',
        TRIPLINE__DIALER__RATE_PER_MINUTE="60000",
        TRIPLINE__DIALER__BURST="500",
    ).start()
    listener = Listener(events_topic)
    for n in range(5):
        emulator.add_customer(f"C-CRIT-{n}")
    for n in range(3000):
        emulator.add_customer(f"C-STORM-{n}")
    http("GET", f"{service.url}/status")  # warm the HTTP side's worker threads
    threads_before = service_threads()
    storm = [
        alert(sensor=f"STORM-{n}", customer=f"C-STORM-{n}", alert_type="door_open")
        for n in range(3000)
    ]
    critical = [alert(sensor=f"CRIT-{n}", customer=f"C-CRIT-{n}") for n in range(5)]
    peak = {"entities": 0, "threads": 0}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            _, status = http("GET", f"{service.url}/status")
            peak["entities"] = max(peak["entities"], status["sensorEntities"])
            peak["threads"] = max(peak["threads"], service_threads())
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, name="test-sampler")
    sampler.start()
    try:
        publish_many(
            service.topic_root,
            storm[:1500] + critical + storm[1500:],
            taken=lambda: sum(
                http("GET", f"{service.url}/status")[1]["counters"].get("accepted", {}).values()
            ),
        )

        def decided(doc: dict[str, Any]) -> bool:
            record = service.record(doc["idempotencyKey"])
            return record is not None and ("outcome" in record or record["state"] == "queued")

        wait_for(lambda: all(decided(d) for d in storm[::50] + critical), timeout=60)
        wait_for(lambda: all(decided(d) for d in storm), timeout=60)
        wait_for(lambda: all(service.outcome(d["idempotencyKey"]) == "called" for d in critical))
        wait_for(lambda: "fleet_incident_started" in [m["type"] for m in listener.messages])
    finally:
        done.set()
        sampler.join()
        listener.close()
    _, status = http("GET", f"{service.url}/status")
    assert status["fleetIncident"] is not None
    assert peak["entities"] <= 400
    # Threads are the actors', the loops' and paho's: none per sensor.
    assert peak["threads"] == threads_before
    reasons = Counter(
        (service.record(d["idempotencyKey"]) or {}).get("reason") for d in storm[::10]
    )
    # Once the incident is declared, non-critical alerts become tasks instead of calls.
    assert reasons["fleet_incident"] > len(storm[::10]) / 2
    keys = Counter(c["body"]["data"]["referenceId"] for c in emulator.callbacks())
    assert all(n == 1 for n in keys.values())  # nobody twice
    assert all(
        calls_to(emulator, emulator.state.customers[f"C-CRIT-{n}"]["phone"]) for n in range(5)
    )


def test_a_slow_alert_is_not_routed_again_while_it_is_still_in_the_actors(
    make_service: Callable[..., ServiceHandle], emulator: EmulatorHandle
) -> None:
    """The sweep's grace passes while the CRM answers slowly: the alert is still in flight.

    Routing it again would make its own cooldown window suppress it (or, in a storm, feed the
    backlog with copies of itself).
    """
    service = make_service(
        TRIPLINE__STATUS__SWEEP_INTERVAL_SECONDS="0.5",
        TRIPLINE__STATUS__SWEEP_ACCEPTED_GRACE_SECONDS="1",
        TRIPLINE__CRM__TIMEOUT_SECONDS="6",
    ).start()
    emulator.add_customer("C-SLOW")
    emulator.state.settings.crm_latency_ms = 3000
    doc = alert(customer="C-SLOW", sensor="SLOW-1")
    service.publish(doc, sensor="SLOW-1")
    wait_for(lambda: service.outcome(doc["idempotencyKey"]) is not None, timeout=15)
    record = service.record(doc["idempotencyKey"])
    assert record is not None
    assert record["outcome"] == "called", record
    assert [h["state"] for h in record["history"]] == ["accepted", "queued", "dialing", "called"]
    assert len(emulator.callbacks()) == 1
