"""The simulated fleet: what a run publishes, decided by the seed."""

from __future__ import annotations

import itertools
import random
from collections import defaultdict

import orjson

from tripline.devtools.simulate import FleetSpec, payloads


def test_flapping_sensors_alternate_firing_and_resolved_and_the_rest_only_fire() -> None:
    spec = FleetSpec(sensors=10, customers="3", count=400, duplicates=0, invalid=0, flapping=0.3)
    by_sensor: dict[str, list[str]] = defaultdict(list)
    for sensor, body in payloads(spec, random.Random(7)):
        by_sensor[sensor].append(orjson.loads(body).get("status", "firing"))
    flappers = {s for s, states in by_sensor.items() if "resolved" in states}
    assert len(flappers) == 3
    for sensor in flappers:
        states = by_sensor[sensor]
        assert all(a != b for a, b in itertools.pairwise(states)), sensor
        assert states[0] == "firing"


def test_timestamps_follow_the_publishing_schedule() -> None:
    spec = FleetSpec(sensors=5, count=50, rate=10.0, duplicates=0, invalid=0)
    stamps = [orjson.loads(body)["timestamp"] for _, body in payloads(spec, random.Random(1))]
    assert stamps == sorted(stamps)
    assert stamps[0] != stamps[-1]


def test_duplicates_and_invalid_payloads_are_mixed_in() -> None:
    spec = FleetSpec(sensors=5, count=500, duplicates=0.2, invalid=0.1)
    out = payloads(spec, random.Random(3))
    invalid = sum(1 for sensor, _ in out if sensor == "invalid")
    keys = [orjson.loads(b)["idempotencyKey"] for s, b in out if s != "invalid"]
    assert 25 < invalid < 80
    assert len(keys) - len(set(keys)) > 50
