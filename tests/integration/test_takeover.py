"""An instance lost for good: a survivor adopts its queued calls, its alerts and its broker session.

Two `tripline run` processes share one subscription group on Mosquitto and one Redis; one is
killed with SIGKILL and never comes back. Mosquitto keeps routing half of the group's new
alerts into the dead member's session and would delete them at the session's expiry
(shared/reference/mqtt-shared-subscriptions.md): the survivor must take that session over too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import redis
from paho.mqtt.enums import CallbackAPIVersion

from tests.conftest import (
    BROKER,
    EmulatorHandle,
    alert,
    discard_session,
    free_port,
    http,
    publish,
    service_env,
    wait_for,
)
from tripline.adapters.mqtt_io import stop_network
from tripline.adapters.store import Keys
from tripline.service.lease import registry_keys

pytestmark = [pytest.mark.integration, pytest.mark.long(40)]

TERMINAL = ("called", "suppressed", "deferred")
TAKEOVER_AFTER = 3  # seconds: the default is 30; the rule is the same


class Instance:
    """One `tripline run` (one process) of the test's pair."""

    def __init__(self, name: str, prefix: str, emulator: EmulatorHandle, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.client_id = f"tripline-{prefix}-{name}"
        env = {
            **os.environ,
            **service_env(prefix, emulator),
            "TRIPLINE__HTTP__PORT": str(self.port),
            "TRIPLINE__MQTT__CLIENT_ID": self.client_id,
            "TRIPLINE__MQTT__SHARED_GROUP": f"g{prefix}",
            "TRIPLINE__STATUS__TAKEOVER_AFTER_SECONDS": str(TAKEOVER_AFTER),
            "TRIPLINE__DIALER__OCCUPANCY_SOURCE": "none",
            "TRIPLINE__DIALER__MAX_RETRIES": "1",
            "TRIPLINE__DIALER__BREAKER_THRESHOLD": "2",
            "TRIPLINE__DIALER__BREAKER_COOL_OFF_SECONDS": "1",
        }
        self.log = log
        with log.open("w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tripline.edge.cli", "run"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        wait_for(lambda: self.status() is not None, timeout=30, interval=0.2)

    def status(self) -> dict[str, Any] | None:
        if self.proc.poll() is not None:
            pytest.fail(f"tripline exited {self.proc.returncode}: {self.log.read_text()[-3000:]}")
        try:
            code, body = http("GET", f"{self.url}/status")
        except OSError:
            return None
        return body if code == 200 else None

    def record(self, key: str) -> dict[str, Any]:
        code, body = http("GET", f"{self.url}/v1/alerts/{key}")
        assert code == 200, body
        return dict(body)

    def outcome(self, key: str) -> str | None:
        code, body = http("GET", f"{self.url}/v1/alerts/{key}")
        return body.get("outcome") if code == 200 else None

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        discard_session(self.client_id)


@pytest.fixture
def pair(prefix: str, emulator: EmulatorHandle, tmp_path: Path) -> Iterator[list[Instance]]:
    instances: list[Instance] = []
    try:
        for name in ("a", "b"):
            # One at a time: if the second fails to start, the first is closed too.
            instances.append(Instance(name, prefix, emulator, tmp_path / f"{name}.log"))  # noqa: PERF401
        yield instances
    finally:
        for instance in instances:
            instance.close()


def _alerts(emulator: EmulatorHandle, count: int, first: int = 0) -> list[dict[str, Any]]:
    run = uuid.uuid4().hex[:6]
    docs = []
    for n in range(count):
        # A number each (the emulator's default derives one from the id: two could share it).
        emulator.add_customer(f"CUST-{run}-{n}", phone=f"+1201555{first + n:04d}")
        docs.append(alert(sensor=f"T-{run}-{n}", customer=f"CUST-{run}-{n}"))
    return docs


def _publish(prefix: str, docs: list[dict[str, Any]]) -> None:
    for doc in docs:
        publish(f"tt/{prefix}/sensors/{doc['sensorId']}/alerts", doc)


def _settings(emulator: EmulatorHandle, **knobs: Any) -> None:
    status, body = http("PUT", f"{emulator.url}/_emulator/settings", knobs)
    assert status == 200, body


def test_a_dead_instances_queued_calls_and_session_are_adopted_and_called_once(
    pair: list[Instance], emulator: EmulatorHandle, prefix: str, redis_client: redis.Redis
) -> None:
    dead, survivor = pair
    keys = Keys(prefix)
    _settings(emulator, failure_status=503)  # the contact center is down: calls queue
    before = _alerts(emulator, 16)
    _publish(prefix, before)
    # Both hold queued calls (the group shares the alerts out between them).
    wait_for(lambda: all(redis_client.hlen(keys.dial_queue(i.client_id)) for i in pair), timeout=30)
    dead.kill()
    # Its calls in 'dialing' when it died are of unknown fate: never sent again (a task).
    dialing = {
        d["idempotencyKey"]
        for d in before
        if redis_client.hget(keys.record(d["idempotencyKey"]), "state") == b"dialing"
    }
    # Published while the dead member is gone: Mosquitto queues its turns in its session.
    during = _alerts(emulator, 16, first=16)
    _publish(prefix, during)
    _settings(emulator, failure_status=0)
    docs = before + during
    wait_for(
        lambda: all(survivor.outcome(d["idempotencyKey"]) in TERMINAL for d in docs),
        timeout=90,
        interval=0.5,
    )
    records = {d["idempotencyKey"]: survivor.record(d["idempotencyKey"]) for d in docs}
    uncertain = {k for k, r in records.items() if r.get("reason") == "dial_uncertain"}
    assert uncertain <= dialing
    assert all(r["outcome"] == "called" for k, r in records.items() if k not in uncertain)
    numbers = Counter(c["body"]["callbackNumbers"][0] for c in emulator.callbacks())
    assert len(numbers) == len(docs) - len(uncertain)
    assert max(numbers.values()) == 1  # none twice

    # Nothing of the dead instance is left waiting: not its indexes, not its session.
    assert not redis_client.hlen(keys.dial_queue(dead.client_id))
    assert not redis_client.zcard(keys.pending(dead.client_id))
    status = survivor.status()
    assert status is not None
    instances = {i["instance"]: i for i in status["leases"]["instances"]}
    assert set(instances) == {survivor.client_id}
    assert instances[survivor.client_id]["state"] == "live"
    assert any(
        e["type"] == "takeover" and e["adoptedFrom"] == dead.client_id for e in status["events"]
    )
    probe = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=dead.client_id, protocol=mqtt.MQTTv5)
    present: list[bool] = []
    probe.on_connect = lambda _c, _u, flags, _rc, _p: present.append(flags.session_present)
    probe.connect(*BROKER, clean_start=False)
    probe.loop_start()
    wait_for(lambda: present, timeout=10)
    probe.disconnect()
    stop_network(probe)
    assert present == [False]  # the survivor ended the dead member's session


def test_alerts_published_across_a_members_death_all_end_once(
    pair: list[Instance], emulator: EmulatorHandle, prefix: str
) -> None:
    """Mosquitto's share for the dead member, published while it is gone, is not lost."""
    dead, survivor = pair
    docs = _alerts(emulator, 60)
    stop = threading.Event()

    def publish_steadily() -> None:
        for doc in docs:  # ~6 s in all, the kill in the middle
            _publish(prefix, [doc])
            if stop.wait(0.1):
                return

    publisher = threading.Thread(target=publish_steadily)
    publisher.start()
    time.sleep(2.0)
    dead.kill()
    publisher.join(30)
    wait_for(
        lambda: all(survivor.outcome(d["idempotencyKey"]) in TERMINAL for d in docs),
        timeout=90,
        interval=0.5,
    )
    outcomes = Counter(survivor.outcome(d["idempotencyKey"]) for d in docs)
    uncertain = [
        d for d in docs if survivor.record(d["idempotencyKey"]).get("reason") == "dial_uncertain"
    ]
    assert outcomes["called"] == len(docs) - len(uncertain)
    numbers = Counter(c["body"]["callbackNumbers"][0] for c in emulator.callbacks())
    assert len(numbers) == outcomes["called"]
    assert max(numbers.values()) == 1


def test_an_instance_whose_lease_was_taken_stops(
    pair: list[Instance], prefix: str, redis_client: redis.Redis
) -> None:
    """Presumed dead (a long pause, a partition) and adopted: it must not go on as well."""
    fenced, other = pair
    token_key = registry_keys(Keys(prefix))[1]
    redis_client.hset(token_key, fenced.client_id, "taken-by-a-survivor")
    assert fenced.proc.wait(TAKEOVER_AFTER + 60) == 3
    assert other.status() is not None
