"""The supervisor replaces dead actors, and `tripline run` stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import (
    EmulatorHandle,
    ServiceHandle,
    alert,
    free_port,
    http,
    service_env,
    tripline_cli,
    wait_for,
)

pytestmark = pytest.mark.integration


def test_a_dead_shard_is_replaced_and_alerts_keep_flowing(
    service: ServiceHandle, emulator: EmulatorHandle
) -> None:
    emulator.add_customer("CUST-9981")
    assert service.service is not None
    shards = [name for name in http("GET", f"{service.url}/status")[1]["actors"] if "shard" in name]
    assert shards
    for name in shards:
        service.service.ref(name).stop()  # as if it had died
    wait_for(lambda: http("GET", f"{service.url}/status")[1]["actors"]["shard-0"]["restarts"] == 1)
    doc = alert()
    service.publish(doc, sensor=doc["sensorId"])
    wait_for(lambda: service.outcome(doc["idempotencyKey"]) == "called")
    body = http("GET", f"{service.url}/status")[1]
    assert body["actors"]["shard-0"]["status"] == "running"
    assert body["actors"]["shard-0"]["lastError"] == "stopped unexpectedly"


def test_tripline_run_serves_and_stops_on_sigterm(prefix: str, emulator: EmulatorHandle) -> None:
    port = free_port()
    env = {**os.environ, **service_env(prefix, emulator), "TRIPLINE__HTTP__PORT": str(port)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tripline.edge.cli", "run", "--workers", "1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def ready() -> bool:
            try:
                return http("GET", f"http://127.0.0.1:{port}/readyz")[0] == 200
            except OSError:
                return False

        wait_for(ready, timeout=20, interval=0.1)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        assert time.monotonic() - started < 15
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_check_config_prints_every_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[mqtt]\nprot = 1\n[sensor]\nshards = 0\n")
    result = tripline_cli("check-config", str(bad))
    assert result.returncode == 1
    assert "mqtt.prot: unknown key (did you mean 'port'?)" in result.stderr
    assert "sensor.shards: must be at least 1" in result.stderr
