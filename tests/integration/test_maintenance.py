"""Maintenance windows end to end: opened over HTTP or from the CLI, applied by the running
service, listed, ended."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import orjson
import pytest

from tests.conftest import EmulatorHandle, ServiceHandle, alert, http, tripline_cli, wait_for

pytestmark = pytest.mark.integration

ADMIN = {"Authorization": "Bearer adm"}


@pytest.fixture
def service(make_service: Callable[..., ServiceHandle]) -> ServiceHandle:
    return make_service(TRIPLINE__HTTP__ADMIN_TOKEN="adm").start()


def decided(service: ServiceHandle, doc: dict[str, Any]) -> tuple[str, str]:
    key = doc["idempotencyKey"]
    wait_for(lambda: service.outcome(key) is not None)
    record = service.record(key)
    assert record is not None
    return record["outcome"], record.get("reason") or ""


def test_a_window_opened_over_http_holds_its_sensors_calls_until_it_is_ended(
    service: ServiceHandle, emulator: EmulatorHandle
) -> None:
    emulator.add_customer("C-MAINT")
    body = {"sensorId": "FRZ-7", "durationSeconds": 7200, "comment": "compressor swap"}
    status, window = http(
        "POST", f"{service.url}/v1/admin/maintenance", body | {"createdBy": "ana"}, ADMIN
    )
    assert status == 201, window
    assert (window["sensorId"], window["state"], window["createdBy"]) == ("FRZ-7", "active", "ana")

    worked_on = alert(sensor="FRZ-7", customer="C-MAINT")
    elsewhere = alert(sensor="FRZ-8", customer="C-MAINT")
    service.publish(worked_on, sensor="FRZ-7")
    service.publish(elsewhere, sensor="FRZ-8")
    assert decided(service, worked_on) == ("suppressed", "maintenance")
    assert decided(service, elsewhere) == ("called", "")
    record = service.record(worked_on["idempotencyKey"])
    assert record is not None
    assert record["detail"] == f"maintenance {window['id']} by ana: compressor swap"

    listed = http("GET", f"{service.url}/v1/admin/maintenance", headers=ADMIN)[1]
    assert [w["id"] for w in listed["windows"]] == [window["id"]]
    status_doc = http("GET", f"{service.url}/status")[1]
    assert [w["id"] for w in status_doc["maintenance"]] == [window["id"]]
    assert status_doc["counters"]["suppressed"]["maintenance"] == 1
    metrics = http("GET", f"{service.url}/metrics")[1]
    assert "tripline_maintenance_windows_open 1.0" in metrics

    status, ended = http(
        "DELETE", f"{service.url}/v1/admin/maintenance/{window['id']}", headers=ADMIN
    )
    assert (status, ended["state"]) == (200, "ended")
    # Stamped after the end: an alert stamped (to the second) inside the window is covered.
    end = datetime.fromisoformat(ended["endsAt"]) + timedelta(seconds=1)
    after = alert(sensor="FRZ-7", customer="C-MAINT") | {
        "timestamp": end.isoformat(timespec="seconds")
    }
    service.publish(after, sensor="FRZ-7")
    assert decided(service, after) == ("called", "")  # no cooldown was claimed meanwhile
    assert http("GET", f"{service.url}/status")[1]["maintenance"] == []


def test_a_bad_window_is_a_problem_per_field_and_the_doors_are_locked(
    service: ServiceHandle,
) -> None:
    url = f"{service.url}/v1/admin/maintenance"
    status, body = http("POST", url, {"durationSeconds": -1, "createdBy": "ana"}, ADMIN)
    assert status == 400
    assert body["error"] == "invalid_window"
    assert {(p["field"], p["reason"]) for p in body["problems"]} == {
        ("sensorId", "missing_field"),
        ("comment", "missing_field"),
        ("durationSeconds", "invalid_field"),
    }
    assert http("POST", url, b"{", ADMIN)[0] == 400
    assert http("POST", url, {"sensorId": "S"})[0] == 401
    assert http("GET", url)[0] == 401
    status, body = http("DELETE", f"{url}/nope", headers=ADMIN)
    assert (status, body["error"]) == (404, "not_found")
    assert http("GET", url, headers=ADMIN)[1] == {"windows": [], "count": 0}


def tripline(
    service: ServiceHandle, *args: str, redis_url: str = ""
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "TRIPLINE__REDIS__URL": redis_url or service.config.redis.url,
        "TRIPLINE__REDIS__KEY_PREFIX": service.prefix,
    }
    return tripline_cli("maintenance", *args, env=env)


def test_a_window_opened_from_the_cli_reaches_the_running_service(
    service: ServiceHandle, emulator: EmulatorHandle
) -> None:
    emulator.add_customer("C-SITE")
    added = tripline(service, "add", "--customer", "C-SITE", "--hours", "1", "--comment", "audit")
    assert added.returncode == 0, added.stderr
    window = orjson.loads(added.stdout)
    assert (window["customerId"], window["sensorId"], window["state"]) == ("C-SITE", None, "active")

    # Another process wrote it: the service sees it at its next poll (about a second).
    wait_for(lambda: http("GET", f"{service.url}/status")[1]["maintenance"] != [])
    doc = alert(sensor="ANY-1", customer="C-SITE")
    service.publish(doc, sensor="ANY-1")
    assert decided(service, doc) == ("suppressed", "maintenance")

    listed = tripline(service, "list")
    assert [orjson.loads(line)["id"] for line in listed.stdout.splitlines()] == [window["id"]]
    ended = tripline(service, "end", window["id"])
    assert (ended.returncode, ended.stdout.strip()) == (0, f"ended {window['id']}")
    wait_for(lambda: http("GET", f"{service.url}/status")[1]["maintenance"] == [])

    refused = tripline(service, "add", "--sensor", "S1", "--hours", "1")
    assert refused.returncode == 2
    assert "maintenance add: --comment: required" in refused.stderr
    assert tripline(service, "end", "nope").returncode == 1
    down = tripline(service, "list", redis_url="redis://127.0.0.1:1/0")
    assert down.returncode == 1
    assert "maintenance list: Redis unavailable" in down.stderr
