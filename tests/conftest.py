"""Shared fixtures: the real Redis and Mosquitto on loopback, the emulator, a running service."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import paho.mqtt.client as mqtt
import pykka
import pytest
import redis
from aiohttp import web
from hypothesis import HealthCheck, settings
from paho.mqtt.enums import CallbackAPIVersion

from tripline.adapters.mqtt_io import stop_network
from tripline.conf import schema
from tripline.devtools.emulator import CLIENT_SECRET, Emulator
from tripline.devtools.emulator import build_app as emulator_app
from tripline.edge.http_api import build_app as service_app
from tripline.messages import Alert
from tripline.service.stats import Stats
from tripline.supervisor import Service

# Speed is the bench's to measure, never a test's to assert: hypothesis's 200 ms deadline per
# example and its too-slow health check are timed assertions, which fail on a loaded machine (CI
# shares two cores among four test workers and the services they start; a test_validate example
# once took 250 ms there) and under qemu-user (scripts/test-debian, 10-20x slower). Off in every
# run; what the examples check is unchanged. `emulated`, the name scripts/test-debian used, stays.
settings.register_profile("suite", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("emulated", parent=settings.get_profile("suite"))
settings.load_profile("suite")

REDIS_URL = "redis://127.0.0.1:6379/0"
BROKER = ("127.0.0.1", 1883)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Whole files in the order scripts/test's workers take them: the long ones first.

    xdist hands out files (--dist loadfile) in this order (--no-loadscope-reorder; its own
    order, by number of tests, left the 3-minute bench file to start last and run alone at the
    end). Files marked `long(seconds)` come first, longest first; the rest after them by their
    number of tests, as xdist would order them.
    """
    files: dict[str, list[pytest.Item]] = {}
    for item in items:
        files.setdefault(item.nodeid.split("::")[0], []).append(item)

    def weight(tests: list[pytest.Item]) -> tuple[float, int]:
        marker = tests[0].get_closest_marker("long")
        return (-float(marker.args[0]) if marker else 0.0, -len(tests))

    items[:] = [item for tests in sorted(files.values(), key=weight) for item in tests]


@pytest.fixture(autouse=True)
def _stop_all_actors() -> Iterator[None]:
    """pykka's own conftest does this: no actor outlives its test."""
    yield
    pykka.ActorRegistry.stop_all()


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Poll `predicate` until it is truthy; fail the test with a clear message otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout}s")
        time.sleep(interval)


def ask(ref: pykka.ActorRef[Any], message: object, timeout: float = 5.0) -> Any:
    """Ask an actor and wait for the answer (tests only: actors never ask each other)."""
    return ref.ask(message, block=True, timeout=timeout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class AppThread:
    """Runs an aiohttp application on its own loop thread, on a free loopback port."""

    def __init__(self, app: web.Application, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._loop = asyncio.new_event_loop()
        self._runner = web.AppRunner(app, access_log=None)
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self._thread.start()
        ready.wait(10)

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        self._loop.run_until_complete(site.start())
        ready.set()
        self._loop.run_forever()

    def stop(self) -> None:
        # aiohttp lingers up to 10 s reading the rest of a body a handler refused (a 413):
        # shutting down waits for that handler.
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


class EmulatorHandle:
    """The emulator running for one test, with helpers to read and steer it."""

    def __init__(self) -> None:
        self.state = Emulator()
        self.app = AppThread(emulator_app(self.state))
        self.url = self.app.url

    def requests(self, path: str | None = None) -> list[dict[str, Any]]:
        found = list(self.state.requests)
        return [r for r in found if path is None or r["path"] == path]

    def callbacks(self) -> list[dict[str, Any]]:
        return [r for r in self.requests("/api/v2/conversations/callbacks") if r["status"] == 200]

    def workitems(self) -> list[dict[str, Any]]:
        return [r for r in self.requests("/api/v2/taskmanagement/workitems") if r["status"] == 200]

    def add_customer(self, customer_id: str, **fields: Any) -> dict[str, Any]:
        """A customer in a zone where it is about 14:00 now, with a phone of its own."""
        doc = {
            "id": customer_id,
            "name": "Test Customer",
            "phone": f"+1201555{zlib.crc32(customer_id.encode()) % 10000:04d}",
            "timezone": zone_in_window(),
            "doNotDisturb": False,
            "doNotCall": False,
            **fields,
        }
        self.state.customers[customer_id] = doc
        return doc


def zone_in_window(target_hour: int = 14) -> str:
    """An Etc/GMT zone whose local hour is about `target_hour` right now (inside 08:00-20:00)."""
    offset = target_hour - datetime.now(UTC).hour
    offset = (offset + 12) % 24 - 12  # into -12 .. +11
    # Etc/GMT signs are inverted (POSIX): Etc/GMT-3 is UTC+3.
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"


def zone_outside_window(target_hour: int = 3) -> str:
    """An Etc/GMT zone where it is about 03:00 now."""
    return zone_in_window(target_hour)


@pytest.fixture
def emulator() -> Iterator[EmulatorHandle]:
    handle = EmulatorHandle()
    yield handle
    handle.state.settings.hang_after_receiving = False  # lets hanging handlers finish
    handle.app.stop()


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.fail("Redis is not answering on 127.0.0.1:6379 (.ci/run starts one)")
    yield client
    client.close()


@pytest.fixture
def prefix(redis_client: redis.Redis) -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    value = f"t{uuid.uuid4().hex[:10]}"
    yield value
    keys = list(redis_client.scan_iter(match=f"{value}:*", count=1000))
    if keys:
        redis_client.delete(*keys)
    shutil.rmtree(ledger_dir(value), ignore_errors=True)


def ledger_dir(prefix: str) -> str:
    """Where a test's service keeps its NDJSON ledger (removed with the prefix's keys)."""
    return str(Path(tempfile.gettempdir()) / f"tripline-ledger-{prefix}")


def service_env(prefix: str, emulator: EmulatorHandle) -> dict[str, str]:
    """The environment of a test's own service: own prefix, topics, client id; the emulator."""
    topic_root = f"tt/{prefix}"
    return {
        "TRIPLINE__REDIS__URL": REDIS_URL,
        "TRIPLINE__REDIS__KEY_PREFIX": prefix,
        "TRIPLINE__MQTT__CLIENT_ID": f"tripline-{prefix}",
        "TRIPLINE__MQTT__TOPIC": f"{topic_root}/sensors/+/alerts",
        "TRIPLINE__MQTT__REJECTED_TOPIC": f"{topic_root}/rejected",
        "TRIPLINE__CRM__BASE_URL": emulator.url,
        "TRIPLINE__GENESYS__BASE_URL": emulator.url,
        "TRIPLINE__GENESYS__LOGIN_URL": emulator.url,
        "TRIPLINE__GENESYS__CLIENT_SECRET": CLIENT_SECRET,
        "TRIPLINE__HTTP__CONTEXT_TOKEN": "ctx-token",
        "TRIPLINE__SENSOR__SNAPSHOT_INTERVAL_SECONDS": "0.2",
        "TRIPLINE__DIALER__BACKOFF_BASE_SECONDS": "0.05",
        "TRIPLINE__CRM__SYNC_INTERVAL_SECONDS": "0",
        # Tests of other capabilities count calls per alert: the tests of grouping and of
        # the pending delay turn these on themselves.
        "TRIPLINE__DIALER__GROUP_WINDOW_SECONDS": "0",
        "TRIPLINE__DIALER__PENDING_SECONDS": "{ critical = 0, high = 0, normal = 0, low = 0 }",
        # A `tripline run` of a test is one process, whose pid is the service's (the default
        # is a worker per core); tests/integration/test_workers.py asks for --workers 2.
        "TRIPLINE__SERVICE__WORKERS": "1",
        "TRIPLINE__LEDGER__PATH": ledger_dir(prefix),
    }


class ServiceHandle:
    """A tripline service configured for one test: own prefix, topics and client id."""

    def __init__(self, *, prefix: str, emulator: EmulatorHandle, env: dict[str, str]) -> None:
        self.prefix = prefix
        self.topic_root = f"tt/{prefix}"
        self.config = schema.load(env={**service_env(prefix, emulator), **env})
        self.service: Service | None = None
        self.http: AppThread | None = None

    def start(self, port: int | None = None) -> ServiceHandle:
        self.service = Service(self.config)
        self.service.start()
        self.http = AppThread(service_app(self.service), port=port)
        wait_for(self.service.broker_connected, timeout=10)
        return self

    def stop(self) -> None:
        if self.http is not None:
            self.http.stop()
            self.http = None
        if self.service is not None:
            self.service.stop()
            self.service = None

    @property
    def stats(self) -> Stats:
        assert self.service is not None
        return self.service.stats

    @property
    def url(self) -> str:
        assert self.http is not None
        return self.http.url

    @property
    def read_headers(self) -> dict[str, str]:
        """What GET /status and the records need when [http] read_token is set."""
        token = self.config.http.read_token
        return {"Authorization": f"Bearer {token}"} if token else {}

    def record(self, key: str) -> dict[str, Any] | None:
        status, body = http("GET", f"{self.url}/v1/alerts/{key}", headers=self.read_headers)
        return body if status == 200 else None

    def outcome(self, key: str) -> str | None:
        rec = self.record(key)
        return rec.get("outcome") if rec else None

    def publish(self, *payloads: bytes | dict[str, Any], sensor: str = "S-1") -> None:
        publish(f"{self.topic_root}/sensors/{sensor}/alerts", *payloads)


@pytest.fixture
def make_service(prefix: str, emulator: EmulatorHandle) -> Iterator[Callable[..., ServiceHandle]]:
    handles: list[ServiceHandle] = []

    def make(**env: str) -> ServiceHandle:
        handle = ServiceHandle(prefix=prefix, emulator=emulator, env=env)
        handles.append(handle)
        return handle

    yield make
    for handle in handles:
        handle.stop()


@pytest.fixture
def service(make_service: Callable[..., ServiceHandle]) -> ServiceHandle:
    return make_service().start()


def discard_session(client_id: str) -> None:
    """End a client id's persistent session at the broker, and what is queued in it."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.connect(*BROKER, clean_start=True)  # no session expiry: gone when we disconnect
    client.loop_start()
    client.disconnect()
    stop_network(client)


def publish(topic: str, *payloads: bytes | dict[str, Any]) -> None:
    """Publish at QoS 1 and wait until the broker has each one."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect(*BROKER)
    client.loop_start()
    try:
        for payload in payloads:
            body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
            client.publish(topic, body, qos=1).wait_for_publish(timeout=10)
    finally:
        client.disconnect()
        stop_network(client)


class Listener:
    """Collects messages on a topic (e.g. the rejected topic)."""

    def __init__(self, topic: str) -> None:
        self.messages: list[dict[str, Any]] = []
        self._subscribed = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self._client.on_message = lambda _c, _u, m: self.messages.append(orjson.loads(m.payload))
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.connect(*BROKER)
        self._client.subscribe(topic, qos=1)
        self._client.loop_start()
        self._subscribed.wait(5)

    def close(self) -> None:
        self._client.disconnect()
        stop_network(self._client)


def http(
    method: str,
    url: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """One HTTP request from a test (synchronous); a body goes as JSON unless told otherwise."""
    if body is not None and not any(k.lower() == "content-type" for k in headers or {}):
        headers = {**(headers or {}), "Content-Type": "application/json"}

    async def go() -> tuple[int, Any]:
        async with aiohttp.ClientSession() as session:
            data = body if isinstance(body, bytes) or body is None else orjson.dumps(body)
            async with session.request(method, url, data=data, headers=headers) as resp:
                raw = await resp.read()
                try:
                    return resp.status, orjson.loads(raw) if raw else None
                except orjson.JSONDecodeError:
                    return resp.status, raw.decode()

    return asyncio.run(go())


def alert(
    key: str | None = None,
    *,
    sensor: str = "TEMP-SNS-4421",
    customer: str = "CUST-9981",
    alert_type: str = "temp_critical",
    **extra: Any,
) -> dict[str, Any]:
    """The source guide's payload, with a fresh key and the current time."""
    doc: dict[str, Any] = {
        "idempotencyKey": key or f"sensor-evt-{uuid.uuid4().hex[:12]}",
        "sensorId": sensor,
        "customerId": customer,
        "alertType": alert_type,
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "telemetryData": {"currentValue": 89.5, "threshold": 85.0, "unit": "celsius"},
    }
    doc.update(extra)
    return doc


def plain_alert(key: str = "K", **fields: Any) -> Alert:
    """An accepted Alert for unit tests (every field set; `fields` override)."""
    values: dict[str, Any] = {
        "idempotency_key": key,
        "sensor_id": "S",
        "customer_id": "C1",
        "alert_type": "t",
        "timestamp": 0.0,
        "firing": True,
        "severity": "",
        "current_value": 1.0,
        "threshold": 0.0,
        "unit": "",
        "reference_id": "R",
        "telemetry_hash": "h",
        "accepted_at": 0.0,
        **fields,
    }
    return Alert(**values)


def tripline_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run one `tripline` command to its end (`env`: the whole environment, None for ours)."""
    return subprocess.run(
        [sys.executable, "-m", "tripline.edge.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def run_quick(
    module: str, timeout: float, size: str = "--quick"
) -> tuple[subprocess.CompletedProcess[str], Any]:
    """Run `python -m <module> --quick` (or `size`); its last stdout line as JSON."""
    # The bench dumps its threads' stacks on stderr shortly before the timeout (shown below).
    env = {**os.environ, "BENCH_TRACEBACK_AFTER": str(max(1.0, timeout - 20))}
    try:
        result = subprocess.run(
            [sys.executable, "-m", module, size],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=env,
        )
    except subprocess.TimeoutExpired as exc:
        # What it printed so far (the bench's phase times are on stderr): which part hung.
        said = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr
        pytest.fail(f"{module} {size} ran past {timeout} s; its stderr:\n{(said or '')[-12000:]}")
    lines = result.stdout.strip().splitlines()
    assert lines, result.stderr[-3000:]
    return result, orjson.loads(lines[-1])
