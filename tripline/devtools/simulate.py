"""`tripline simulate`: a sensor fleet publishing realistic alerts.

Duplicates (re-delivery), malformed payloads, and flapping sensors (each alert of one toggles
firing/resolved) on demand; a storm is many sensors at a high rate
(`--sensors 50000 --count 50000 --rate 5000`).
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tripline.adapters.mqtt_io import stop_network
from tripline.devtools.emulator import demo_customers

_TYPES = (
    ("temp_critical", 85.0, "celsius", "critical"),
    ("temp_high", 8.0, "celsius", ""),
    ("vibration_spike", 12.5, "mm/s", "high"),
    ("flood", 1.0, "bool", ""),
    ("battery_low", 15.0, "percent", "low"),
    ("connectivity_lost", 300.0, "s", ""),
)

# Each is wrong in one way the validator must name.
_INVALID: tuple[bytes, ...] = (
    b"{not json",
    b'["an", "array"]',
    b'{"sensorId": "S-1"}',
    (
        b'{"idempotencyKey": "bad-ts", "sensorId": "S-1", "customerId": "C-1", '
        b'"alertType": "temp_high", "timestamp": "2024-05-13T14:32:00", '
        b'"telemetryData": {"currentValue": 9.1, "threshold": 8.0, "unit": "celsius"}}'
    ),
    (
        b'{"idempotencyKey": "bad-num", "sensorId": "S-1", "customerId": "C-1", '
        b'"alertType": "temp_high", "timestamp": "2024-05-13T14:32:00Z", '
        b'"telemetryData": {"currentValue": "hot", "threshold": 8.0, "unit": "celsius"}}'
    ),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class FleetSpec:
    """What to simulate."""

    sensors: int = 20
    customers: str = "demo"
    """'demo' for the emulator's demo customers, or a number N for CUST-0 .. CUST-(N-1)."""
    rate: float = 20.0
    """Alerts per second."""
    count: int = 100
    """Alerts to publish in all (duplicates and invalid ones included)."""
    duplicates: float = 0.1
    """Fraction re-published with the same idempotencyKey (broker/middleware re-delivery)."""
    invalid: float = 0.05
    """Fraction of malformed payloads."""
    flapping: float = 0.0
    """Fraction of sensors that flap: their alerts alternate firing and resolved."""
    run_id: str = ""
    """Makes keys unique per run (default: the start time)."""


def customer_ids(spec: FleetSpec) -> list[str]:
    """The customers the fleet belongs to."""
    if spec.customers == "demo":
        return list(demo_customers())
    return [f"CUST-{n}" for n in range(int(spec.customers))]


def make_alert(
    *, key: str, sensor: str, customer: str, rng: random.Random, at: float, resolved: bool = False
) -> dict[str, Any]:
    """One alert in the source guide's shape."""
    alert_type, threshold, unit, severity = rng.choice(_TYPES)
    doc: dict[str, Any] = {
        "idempotencyKey": key,
        "sensorId": sensor,
        "customerId": customer,
        "alertType": alert_type,
        "timestamp": datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds"),
        "telemetryData": {
            "currentValue": round(threshold * rng.uniform(1.01, 1.3), 2),
            "threshold": threshold,
            "unit": unit,
        },
    }
    if severity:
        doc["severity"] = severity
    if resolved:
        doc["status"] = "resolved"
    return doc


def payloads(spec: FleetSpec, rng: random.Random) -> list[tuple[str, bytes]]:
    """The (sensorId, payload) sequence a run publishes."""
    run = spec.run_id or str(int(time.time()))
    customers = customer_ids(spec)
    sensors = [(f"SNS-{run}-{n}", customers[n % len(customers)]) for n in range(spec.sensors)]
    flapping = {s for s, _ in sensors[: round(spec.flapping * len(sensors))]}
    firing: dict[str, bool] = {}  # a flapping sensor's last state
    out: list[tuple[str, bytes]] = []
    sent: list[tuple[str, bytes]] = []
    start = time.time()
    for seq in range(spec.count):
        roll = rng.random()
        if roll < spec.invalid:
            out.append(("invalid", rng.choice(_INVALID)))
        elif roll < spec.invalid + spec.duplicates and sent:
            out.append(rng.choice(sent))
        else:
            sensor, customer = rng.choice(sensors)
            resolved = False
            if sensor in flapping:
                resolved = firing.get(sensor, False)
                firing[sensor] = not resolved
            doc = make_alert(
                key=f"evt-{run}-{seq}",
                sensor=sensor,
                customer=customer,
                rng=rng,
                at=start + seq / spec.rate,  # when it will be published
                resolved=resolved,
            )
            item = (sensor, orjson.dumps(doc))
            sent.append(item)
            out.append(item)
    return out


def simulate(
    spec: FleetSpec,
    *,
    host: str = "127.0.0.1",
    port: int = 1883,
    topic_prefix: str = "sensors",
    seed: int | None = None,
    on_publish: Callable[[int], None] | None = None,
) -> Counter[str]:
    """Publish the fleet's alerts at QoS 1 and paced at `spec.rate`; return what was sent.

    `on_publish(n)` is told after each message how many were published so far (the demo's
    progress).
    """
    rng = random.Random(seed)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(1000)
    client.connect(host, port)
    client.loop_start()
    sent: Counter[str] = Counter()
    start = time.monotonic()
    infos = []
    for n, (sensor, body) in enumerate(payloads(spec, rng)):
        due = start + n / spec.rate
        if (delay := due - time.monotonic()) > 0:
            time.sleep(delay)
        infos.append(client.publish(f"{topic_prefix}/{sensor}/alerts", body, qos=1))
        sent["invalid" if sensor == "invalid" else "published"] += 1
        if on_publish is not None:
            on_publish(n + 1)
    for info in infos:
        info.wait_for_publish(timeout=10)
    client.disconnect()
    stop_network(client)
    return sent
