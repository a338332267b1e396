"""`tripline run --workers 2`: two processes, one subscription group, one port, one answer."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import (
    EmulatorHandle,
    alert,
    discard_session,
    free_port,
    http,
    publish,
    service_env,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.long(75)]

TERMINAL = ("called", "suppressed", "deferred")
JSON = {"Content-Type": "application/json"}


class Workers:
    """One `tripline run --workers 2` of a test, on its own prefix, topic and client ids."""

    def __init__(
        self,
        prefix: str,
        emulator: EmulatorHandle,
        log: Path,
        extra: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.client_id = f"tripline-{prefix}"
        self.topic_root = f"tt/{prefix}"
        env = {
            **os.environ,
            **service_env(prefix, emulator),
            "TRIPLINE__HTTP__PORT": str(self.port),
            **(extra or {}),
        }
        with log.open("w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tripline.edge.cli", "run", "--workers", "2"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        self.log = log
        wait_for(self.all_up, timeout=30, interval=0.2)

    def status(self) -> dict[str, Any] | None:
        if self.proc.poll() is not None:
            pytest.fail(f"tripline exited {self.proc.returncode}: {self.log.read_text()[-3000:]}")
        try:
            code, body = http("GET", f"{self.url}/status")
        except OSError:
            return None
        return body if code == 200 else None

    def all_up(self) -> bool:
        status = self.status()
        if status is None or status["partial"]:
            return False
        ready = [http("GET", f"{self.url}/readyz")[0] == 200 for _ in range(4)]
        return all(ready) and all(w["up"] for w in status["workers"])

    def pids(self) -> list[int]:
        status = wait_for(
            lambda: (s := self.status()) is not None and not s["partial"] and s, timeout=30
        )
        return [w["pid"] for w in status["workers"]]

    def publish(self, doc: dict[str, Any]) -> None:
        publish(f"{self.topic_root}/sensors/{doc['sensorId']}/alerts", doc)

    def outcome(self, key: str) -> str | None:
        code, body = http("GET", f"{self.url}/v1/alerts/{key}")
        return body.get("outcome") if code == 200 else None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # the parent removes its runtime directory
            try:
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for index in range(2):  # the sessions of both workers, and what is queued in them
            discard_session(self.client_id if index == 0 else f"{self.client_id}-w{index}")


def _alive(pid: int) -> bool:
    """Running (a zombie nobody reaped yet has exited)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.fixture
def workers(prefix: str, emulator: EmulatorHandle, tmp_path: Path) -> Iterator[Workers]:
    handle = Workers(prefix, emulator, tmp_path / "tripline.log")
    pids = handle.pids()
    try:
        yield handle
    finally:
        handle.close()
        for pid in pids:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _alerts(
    emulator: EmulatorHandle, count: int, alert_type: str = "temp_critical"
) -> list[dict[str, Any]]:
    """`count` alerts of distinct sensors and customers: each one call."""
    run = uuid.uuid4().hex[:6]
    docs = []
    for n in range(count):
        emulator.add_customer(f"CUST-{run}-{n}")
        docs.append(alert(sensor=f"W-{run}-{n}", customer=f"CUST-{run}-{n}", alert_type=alert_type))
    return docs


def _settled(workers: Workers, emulator: EmulatorHandle, docs: list[dict[str, Any]]) -> None:
    """Every alert one terminal outcome, called; one callback per sensor, none twice."""
    keys = [d["idempotencyKey"] for d in docs]
    wait_for(lambda: all(workers.outcome(k) in TERMINAL for k in keys), timeout=30, interval=0.2)
    assert {workers.outcome(k) for k in keys} == {"called"}
    per_sensor = Counter(c["body"]["data"]["sensorId"] for c in emulator.callbacks())
    assert all(per_sensor[d["sensorId"]] == 1 for d in docs), per_sensor
    assert max(per_sensor.values()) == 1


def test_two_workers_share_the_alerts_and_answer_for_each_other(
    workers: Workers, emulator: EmulatorHandle
) -> None:
    mqtt_docs, http_docs = _alerts(emulator, 20), _alerts(emulator, 10)
    for doc in mqtt_docs:
        workers.publish(doc)
    for doc in http_docs:
        assert http("POST", f"{workers.url}/v1/alerts", doc)[0] == 202
    _settled(workers, emulator, mqtt_docs + http_docs)

    status = workers.status()
    assert status is not None
    assert status["instance"] == workers.client_id
    assert [w["clientId"] for w in status["workers"]] == [
        workers.client_id,
        f"{workers.client_id}-w1",
    ]
    assert sum(status["counters"]["called"].values()) == 30  # summed over both
    assert set(status["actors"]) >= {"w0/dialer", "w1/dialer", "w0/mqtt", "w1/mqtt"}

    code, text = http("GET", f"{workers.url}/metrics")
    assert code == 200
    assert text.count("# TYPE tripline_alerts_total counter") == 1
    families = {f.name: f for f in text_string_to_metric_families(text)}
    accepted = Counter[str]()
    for sample in families["tripline_alerts"].samples:
        if sample.labels["outcome"] == "accepted" and sample.name.endswith("_total"):
            accepted[sample.labels["worker"]] += int(sample.value)
    assert sum(accepted.values()) == 30
    assert accepted["0"] > 0  # the group spread the MQTT alerts
    assert accepted["1"] > 0
    assert {s.labels["worker"] for s in families["tripline_worker_up"].samples} == {"0", "1"}


def _per_worker(text: str, family: str) -> Counter[str]:
    out = Counter[str]()
    for f in text_string_to_metric_families(text):
        if f.name == family:
            for sample in f.samples:
                if sample.name.endswith("_total"):
                    out[sample.labels["worker"]] += int(sample.value)
    return out


def test_what_a_busy_door_hands_off_is_decided_once_by_a_worker(
    prefix: str, emulator: EmulatorHandle, tmp_path: Path
) -> None:
    # A long linger: the back-to-back requests below fall into one hand-on however slow
    # the machine, so the door counts as busy and hands its alerts off.
    # Not critical (critical alerts are never handed off), and called whatever the customers'
    # local time (a safety override), as temp_critical is.
    env = {
        "TRIPLINE__HTTP__ROUTE_LINGER_MS": "200",
        "TRIPLINE__COMPLY__SAFETY_OVERRIDE_ALERT_TYPES": '["temp_high"]',
    }
    handle = Workers(prefix, emulator, tmp_path / "tripline.log", env)
    pids = handle.pids()
    try:
        docs = _alerts(emulator, 120, "temp_high")
        asyncio.run(_post_on_one_connection(f"{handle.url}/v1/alerts", docs))
        _settled(handle, emulator, docs)  # each decided once and called once: none lost
        text = http("GET", f"{handle.url}/metrics")[1]
        out = _per_worker(text, "tripline_webhook_handoff_out")
        taken = _per_worker(text, "tripline_webhook_handoff_in")
        assert len([w for w, n in out.items() if n > 0]) == 1  # one connection: one door
        assert sum(out.values()) > 0
        assert sum(taken.values()) == sum(out.values())  # every handed-off alert was taken
    finally:
        handle.close()
        for pid in pids:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


async def _post_on_one_connection(url: str, docs: list[dict[str, Any]]) -> None:
    """POST every alert on one keep-alive connection, back to back (a sender's one client)."""
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def post(doc: dict[str, Any]) -> int:
            async with session.post(url, data=orjson.dumps(doc), headers=JSON) as response:
                await response.read()
                return response.status

        statuses = await asyncio.gather(*(post(d) for d in docs))
    assert set(statuses) == {202}


def test_a_killed_worker_is_replaced_and_alerts_keep_flowing(
    workers: Workers, emulator: EmulatorHandle
) -> None:
    first = workers.pids()
    os.kill(first[1], signal.SIGKILL)
    docs = _alerts(emulator, 10)
    for doc in docs:  # while worker 1 is away: its share waits in its session
        workers.publish(doc)
    wait_for(lambda: workers.pids()[1] not in (None, first[1]), timeout=30, interval=0.2)
    assert workers.pids()[0] == first[0]
    _settled(workers, emulator, docs)
    assert "worker 1 (pid" in workers.log.read_text()


def test_the_workers_stop_when_the_parent_is_killed(workers: Workers) -> None:
    pids = workers.pids()
    directory = _runtime_dir(pids[0])
    workers.proc.kill()
    workers.proc.wait()
    wait_for(lambda: not any(_alive(p) for p in pids), timeout=30, interval=0.2)
    assert not directory.exists()  # the workers removed what the parent could not


def _runtime_dir(pid: int) -> Path:
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    return Path(argv[argv.index(b"--runtime-dir") + 1].decode())


def test_sigterm_stops_every_worker_cleanly(workers: Workers) -> None:
    pids = workers.pids()
    for pid in pids:  # as systemd signals every process of the unit; the parent passes it on too
        os.kill(pid, signal.SIGTERM)
    workers.proc.send_signal(signal.SIGTERM)
    assert workers.proc.wait(timeout=40) == 0
    assert not any(_alive(p) for p in pids)


def test_one_to_two_workers_and_back_never_delivers_an_alert_twice(
    prefix: str, emulator: EmulatorHandle, tmp_path: Path
) -> None:
    """Worker 0's session keeps the single process's subscription, and the other way round."""
    port = free_port()
    topic_root = f"tt/{prefix}"
    env = {
        **os.environ,
        **service_env(prefix, emulator),
        "TRIPLINE__HTTP__PORT": str(port),
        # The critical lane's sessions go the same way (client id + "-critical").
        "TRIPLINE__MQTT__CRITICAL_TOPIC": f"{topic_root}/critical/+/alerts",
    }
    url, client = f"http://127.0.0.1:{port}", f"tripline-{prefix}"

    def run(count: int, docs: list[dict[str, Any]]) -> dict[str, Any]:
        with (tmp_path / f"run-{count}.log").open("a") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tripline.edge.cli", "run", "--workers", str(count)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        try:

            def ready() -> dict[str, Any] | None:
                try:
                    code, body = http("GET", f"{url}/status")
                except OSError:
                    return None
                whole = code == 200 and not body.get("partial")
                up = whole and http("GET", f"{url}/readyz")[0] == 200
                return body if up and len(body.get("workers", [None])) == count else None

            wait_for(ready, timeout=30, interval=0.2)
            for n, doc in enumerate(docs):
                lane = "critical" if n % 2 else "sensors"
                publish(f"{topic_root}/{lane}/{doc['sensorId']}/alerts", doc)

            def called() -> bool:
                for doc in docs:
                    code, body = http("GET", f"{url}/v1/alerts/{doc['idempotencyKey']}")
                    if code != 200 or body.get("outcome") != "called":
                        return False
                return True

            wait_for(called, timeout=30, interval=0.2)
            time.sleep(1.0)  # a second copy, if the broker sent one, is counted by now
            counters: dict[str, Any] = http("GET", f"{url}/status")[1]["counters"]
            return counters
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=40) == 0

    try:
        run(1, [])  # the single process's session: the plain filter
        for count in (2, 1):
            # Several: the group hands them round, so some reach worker 0 through it.
            counters = run(count, _alerts(emulator, 6))
            assert counters.get("suppressed", {}).get("duplicate", 0) == 0, (count, counters)
            assert sum(counters["accepted"].values()) == 6, (count, counters)
    finally:
        for client_id in (client, f"{client}-w1"):
            discard_session(client_id)
            discard_session(f"{client_id}-critical")
