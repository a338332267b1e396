"""The fault suite: real processes, real faults, then proof that nothing was lost or doubled.

    python -m bench.faults            # 20,000-alert stream per scenario
    python -m bench.faults --quick    # the short variant CI runs
    python -m bench.faults --only sentinel-failover   # one scenario

It starts its own Redis (append-only file, fsync always) and Mosquitto (persistence, raised
limits) on spare loopback ports, the emulator, and tripline as separate processes; then per
scenario: kill -9 the service again and again mid-stream; restart Redis mid-stream; restart
Mosquitto mid-stream; two instances on one shared subscription; and (not in --quick) a Redis
primary watched by three sentinels, killed with kill -9 mid-stream: a replica takes over and the
service, told only the sentinels, follows it. After each it checks that every published alert
has exactly one terminal outcome and that the emulator received at most one callback per
idempotency key and per sensor. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import redis
from paho.mqtt.enums import CallbackAPIVersion

from bench.redis_rigs import SentinelRig
from tripline.adapters.mqtt_io import stop_network
from tripline.devtools.emulator import CLIENT_SECRET

TERMINAL = {"called", "suppressed", "deferred"}


def _free_port() -> int:
    import socket  # noqa: PLC0415

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.02)


def _http_json(method: str, url: str, body: Any = None) -> Any:  # noqa: ANN401
    data = orjson.dumps(body) if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - loopback
    with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - loopback
        return orjson.loads(resp.read())


class Rig:
    """Redis, Mosquitto and the emulator of one suite run, each a process of its own."""

    def __init__(self, root: Path, *, fsync: str = "always") -> None:
        self.root, self.fsync = root, fsync
        self.redis_port, self.mqtt_port, self.emu_port = _free_port(), _free_port(), _free_port()
        self.redis_proc: subprocess.Popen[bytes] | None = None
        self.mqtt_proc: subprocess.Popen[bytes] | None = None
        (root / "mqtt").mkdir()
        # Mosquitto started as root drops to its own user: it must be able to write its
        # persistence file, or a restart loses every session (and the alerts queued in them).
        root.chmod(0o755)
        (root / "mqtt").chmod(0o777)
        (root / "redis").mkdir()
        (root / "mosquitto.conf").write_text(
            f"listener {self.mqtt_port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {root / 'mqtt'}/\nmax_inflight_messages 1000\n"
            "max_queued_messages 1000000\nset_tcp_nodelay true\n"
        )
        self.emulator = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tripline.edge.cli",
                "--log-level",
                "WARNING",
                "emulate",
                "--port",
                str(self.emu_port),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.start_redis()
        self.start_mqtt()
        self.emu = f"http://127.0.0.1:{self.emu_port}"
        _wait(self._emulator_up, 20, "emulator")
        _http_json("PUT", f"{self.emu}/_emulator/settings", {"rate_limit_per_minute": 0})

    def _emulator_up(self) -> bool:
        try:
            _http_json("GET", f"{self.emu}/_emulator/requests")
        except OSError:
            return False
        return True

    def start_redis(self) -> None:
        self.redis_proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.redis_port),
                "--bind",
                "127.0.0.1",
                "--appendonly",
                "yes",
                "--appendfsync",
                self.fsync,
                "--save",
                "",
                "--dir",
                str(self.root / "redis"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.redis_port)
        _wait(lambda: pings(client), 20, "redis")

    def restart_redis(self, down: float) -> None:
        redis.Redis(port=self.redis_port).shutdown(nosave=True)  # the AOF keeps everything
        assert self.redis_proc is not None
        self.redis_proc.wait(10)
        time.sleep(down)
        self.start_redis()

    def start_mqtt(self) -> None:
        self.mqtt_proc = subprocess.Popen(
            ["mosquitto", "-c", str(self.root / "mosquitto.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.3)

    def restart_mqtt(self, down: float) -> None:
        assert self.mqtt_proc is not None
        self.mqtt_proc.send_signal(signal.SIGTERM)  # saves sessions and queued messages
        self.mqtt_proc.wait(10)
        time.sleep(down)
        self.start_mqtt()

    def close(self) -> None:
        for proc in (self.emulator, self.mqtt_proc, self.redis_proc):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(10)


def pings(client: redis.Redis) -> bool:
    """Whether Redis answers (a stopped one raises instead)."""
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


class Service:
    """One tripline process; kill() is kill -9, start() brings the same instance back."""

    def __init__(
        self,
        rig: Rig,
        prefix: str,
        instance: str,
        group: str = "",
        args: str = "",
        **extra: str,
    ) -> None:
        self.port = _free_port()
        self.log = rig.root / f"{instance}.log"
        self.env = {
            **os.environ,
            "TRIPLINE__HTTP__PORT": str(self.port),
            "TRIPLINE__REDIS__URL": f"redis://127.0.0.1:{rig.redis_port}/0",
            "TRIPLINE__REDIS__KEY_PREFIX": prefix,
            "TRIPLINE__LEDGER__PATH": str(
                rig.root / "ledger"
            ),  # the NDJSON ledger, removed with it
            "TRIPLINE__MQTT__PORT": str(rig.mqtt_port),
            "TRIPLINE__MQTT__CLIENT_ID": instance,
            "TRIPLINE__MQTT__SHARED_GROUP": group,
            "TRIPLINE__GENESYS__BASE_URL": rig.emu,
            "TRIPLINE__GENESYS__LOGIN_URL": rig.emu,
            "TRIPLINE__GENESYS__CLIENT_SECRET": CLIENT_SECRET,
            "TRIPLINE__CRM__BASE_URL": rig.emu,
            "TRIPLINE__CRM__SYNC_INTERVAL_SECONDS": "0",
            "TRIPLINE__DIALER__RATE_PER_MINUTE": "30000",
            "TRIPLINE__DIALER__BURST": "100",
            "TRIPLINE__DIALER__MAX_CONCURRENCY": "32",
            "TRIPLINE__DIALER__OCCUPANCY_SOURCE": "none",
            "TRIPLINE__COMPLY__NUMBER_CAPS": '["100000/24h"]',
            "TRIPLINE__COMPLY__CUSTOMER_CAPS": '["100000/24h"]',
            "TRIPLINE__STATUS__SWEEP_INTERVAL_SECONDS": "1",
            "TRIPLINE__STATUS__SWEEP_ACCEPTED_GRACE_SECONDS": "5",
            "TRIPLINE__STATUS__RESTART_BUDGET": "50",
            # One process, as every figure here was measured (`args` may ask for --workers N).
            "TRIPLINE__SERVICE__WORKERS": "1",
            **extra,
        }
        self.args = args.split()  # after `run`, e.g. "--workers 2"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        """Start the process; returns the seconds until /readyz said ready."""
        started = time.monotonic()
        # Logging as shipped (INFO: one JSON line per decision, ~8 % of the throughput here),
        # kept for a post-mortem.
        with self.log.open("ab") as log:
            command = [sys.executable, "-m", "tripline.edge.cli", "--log-level", "INFO", "run"]
            self.proc = subprocess.Popen(
                [*command, *self.args],
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        _wait(self._ready, 30, "service ready")
        return time.monotonic() - started

    def _ready(self) -> bool:
        try:
            return bool(_http_json("GET", f"http://127.0.0.1:{self.port}/readyz")["ready"])
        except OSError:
            return False

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class Publisher(threading.Thread):
    """Publishes the stream at QoS 1 and re-publishes anything the broker did not confirm."""

    def __init__(self, port: int, count: int, rate: float, run: str) -> None:
        super().__init__(daemon=True)
        self.port, self.count, self.rate, self.run_id = port, count, rate, run
        sensors = max(1, count // 40)
        rng = random.Random(run)
        self.messages: list[tuple[str, bytes, dict[str, Any]]] = []
        for n in range(count):
            k = rng.randrange(sensors)
            sensor = f"F-{run}-{k}"  # a sensor belongs to one customer
            doc = {
                "idempotencyKey": f"{run}-{n}",
                "sensorId": sensor,
                "customerId": f"CUST-{k % 10_000}",
                "alertType": "temp_critical",
                "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
                "telemetryData": {"currentValue": 90.0, "threshold": 85.0, "unit": "celsius"},
            }
            self.messages.append((f"sensors/{sensor}/alerts", orjson.dumps(doc), doc))
        self.keys: set[str] = {str(doc["idempotencyKey"]) for _, _, doc in self.messages}

    def run(self) -> None:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"pub-{self.run_id}", protocol=mqtt.MQTTv5
        )
        client.max_inflight_messages_set(500)
        client.max_queued_messages_set(0)
        client.connect_async("127.0.0.1", self.port, clean_start=False)
        client.loop_start()
        _wait(client.is_connected, 20, "publisher connected")
        start = time.monotonic()
        infos = []
        for n, (topic, body, _) in enumerate(self.messages):
            if (delay := start + n / self.rate - time.monotonic()) > 0:
                time.sleep(delay)
            infos.append((topic, body, client.publish(topic, body, qos=1)))
        # Anything the broker never confirmed (it was restarting) goes again: keys dedupe it.
        for _ in range(120):
            time.sleep(0.5)
            unconfirmed = [(t, b) for t, b, i in infos if not _confirmed(i)]
            if not unconfirmed:
                break
            if client.is_connected():
                # Re-send only what never left (the broker was away); the rest is in flight.
                infos = [(t, b, i) for t, b, i in infos if not _confirmed(i)]
                infos = [
                    (t, b, client.publish(t, b, qos=1) if i.rc != mqtt.MQTT_ERR_SUCCESS else i)
                    for t, b, i in infos
                ]
        client.disconnect()
        stop_network(client)


def _confirmed(info: mqtt.MQTTMessageInfo) -> bool:
    try:
        return info.is_published()
    except RuntimeError:  # published while the broker was away: never confirmed
        return False


def check(
    rig: Rig, prefix: str, pub: Publisher, settle: float, client: redis.Redis | None = None
) -> dict[str, Any]:
    """Wait until every published alert is decided (or `settle` passes), then count.

    `client`: where the records are (the rig's Redis unless told).
    """
    client = client or redis.Redis(port=rig.redis_port)
    keys = sorted(pub.keys)

    def outcomes() -> list[bytes | None]:
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.hget(f"{prefix}:{{a:{key}}}:rec", "outcome")
        return list(pipe.execute())

    deadline = time.monotonic() + settle
    while True:
        found = outcomes()
        if all(found) or time.monotonic() > deadline:
            break
        time.sleep(1)
    records = sum(client.exists(f"{prefix}:{{a:{k}}}:rec") for k in keys)
    by_outcome = Counter(o.decode() for o in found if o)
    calls = [
        r
        for r in _http_json("GET", f"{rig.emu}/_emulator/requests")
        if r["path"] == "/api/v2/conversations/callbacks"
        and r["status"] == 200
        and r["body"]["data"]["sensorId"].startswith(f"F-{pub.run_id}-")
    ]
    per_sensor = Counter(r["body"]["data"]["sensorId"] for r in calls)
    per_reference = Counter(r["body"]["data"]["referenceId"] for r in calls)
    duplicates = sum(n - 1 for n in per_sensor.values() if n > 1) + sum(
        n - 1 for n in per_reference.values() if n > 1
    )
    missing = [k for k, o in zip(keys, found, strict=True) if not o][:5]
    if missing:
        print(f"  undecided, e.g.: {missing}", flush=True)
    return {
        "published": len(keys),
        "accepted": records,
        "terminal": sum(by_outcome.values()),
        "lost": len(keys) - sum(by_outcome.values()),
        "duplicate_calls": duplicates,
        "callbacks": len(calls),
        "outcomes": dict(by_outcome),
    }


def scenario(
    name: str,
    rig: Rig,
    *,
    count: int,
    rate: float,
    settle: float,
    action: Callable[[list[Service], Publisher], None],
    instances: int = 1,
    env: dict[str, str] | None = None,
    records: Callable[[], redis.Redis] | None = None,
) -> dict[str, Any]:
    prefix = f"f{uuid.uuid4().hex[:8]}"
    group = prefix if instances > 1 else ""
    services = [
        Service(rig, prefix, f"{prefix}-{n}", group, **(env or {})) for n in range(instances)
    ]
    for service in services:
        service.start()
    pub = Publisher(rig.mqtt_port, count, rate, prefix)
    started = time.monotonic()
    pub.start()
    try:
        action(services, pub)
        pub.join()
        result = check(rig, prefix, pub, settle, records() if records else None)
    finally:
        for service in services:
            service.stop()
    result["seconds"] = round(time.monotonic() - started, 1)
    print(
        f"{name:<22} "
        + " ".join(f"{k}={v}" for k, v in result.items() if k != "outcomes")
        + f" outcomes={result['outcomes']}",
        flush=True,
    )
    return result


def after(delay: float, fault: Callable[[], None]) -> Callable[[list[Service], Publisher], None]:
    """A fault `delay` seconds into the stream."""

    def act(_services: list[Service], _pub: Publisher) -> None:
        time.sleep(delay)
        fault()

    return act


def kill_loop(every: float) -> Callable[[list[Service], Publisher], None]:
    def act(services: list[Service], pub: Publisher) -> None:
        kills = 0
        while pub.is_alive():
            time.sleep(every)
            if not pub.is_alive():
                break
            services[0].kill()
            kills += 1
            services[0].start()
        print(f"  (kill -9 x{kills})", flush=True)

    return act


def sentinel_failover(
    root: Path, rig: Rig, *, count: int, rate: float, settle: float, wait_replicas: int = 1
) -> dict[str, Any]:
    """A 20,000-alert stream while the Redis primary is killed (kill -9) a third of the way in.

    A primary and two replicas (append-only, fsync always, as the rig's Redis) and three
    sentinels, configured as docs/deployment.md asks: the sentinels call a primary down after
    5 s (1 s made this loaded machine's stalls look like deaths: needless failovers, each
    throwing away what the demoted primary took meanwhile), and tripline waits for one replica
    to have each batch of writes (`[redis] wait_replicas = 1`) before acting on it. The service
    knows only the sentinels. The old primary comes back a few seconds after the failover, as
    an operator would restart it: the sentinels make it a replica of the new one.
    """
    watched = SentinelRig(
        root / "sentinel",
        replicas=2,
        down_after_ms=5000,
        args=("--appendonly", "yes", "--appendfsync", rig.fsync),
    )
    failover: dict[str, float] = {}

    def fail(_services: list[Service], _pub: Publisher) -> None:
        time.sleep(count / rate / 3)
        old = watched.kill_primary()
        started = time.monotonic()
        watched.wait_promoted(old)
        failover["promoted_after_s"] = round(time.monotonic() - started, 2)
        time.sleep(3.0)
        watched.rejoin(old)
        print(f"  (primary {old.port} killed; {watched.primary().port} took over)", flush=True)

    env = {
        "TRIPLINE__REDIS__URL": "redis://127.0.0.1:1/0",
        "TRIPLINE__REDIS__WAIT_REPLICAS": str(wait_replicas),
        **watched.env(),
    }
    try:
        result = scenario(
            "sentinel failover",
            rig,
            count=count,
            rate=rate,
            settle=settle,
            action=fail,
            env=env,
            records=lambda: watched.primary().client(),
        )
    finally:
        watched.close()
    return {**result, **failover}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--quick", action="store_true", help="the short variant CI runs")
    parser.add_argument(
        "--only",
        help="run one scenario: kill-9, redis-restart, mosquitto-restart, two-instances or "
        "sentinel-failover (not part of --quick unless named here)",
    )
    parser.add_argument(
        "--wait-replicas",
        type=int,
        default=1,
        help="[redis] wait_replicas in the sentinel-failover scenario (0: asynchronous only)",
    )
    args = parser.parse_args(argv)
    count, rate, settle = (1500, 500.0, 90.0) if args.quick else (20_000, 1000.0, 300.0)
    root = Path(tempfile.mkdtemp(prefix="tripline-faults-"))
    rig = Rig(root)
    results: dict[str, dict[str, Any]] = {}
    kill_every = 1.0 if args.quick else 3.0
    plans: dict[str, tuple[str, Callable[[list[Service], Publisher], None], int]] = {
        "kill-9": ("kill -9 mid-stream", kill_loop(kill_every), 1),
        "redis-restart": (
            "redis restart",
            after(count / rate / 3, lambda: rig.restart_redis(2.0)),
            1,
        ),
        "mosquitto-restart": (
            "mosquitto restart",
            after(count / rate / 3, lambda: rig.restart_mqtt(2.0)),
            1,
        ),
        "two-instances": ("two instances", after(0.0, lambda: None), 2),
    }
    try:
        for key, (name, action, instances) in plans.items():
            if args.only and key != args.only:
                continue
            results[key] = scenario(
                name, rig, count=count, rate=rate, settle=settle, action=action, instances=instances
            )
        if args.only == "sentinel-failover" or not (args.quick or args.only):
            results["sentinel-failover"] = sentinel_failover(
                root, rig, count=count, rate=rate, settle=settle, wait_replicas=args.wait_replicas
            )
    finally:
        rig.close()
        shutil.rmtree(root, ignore_errors=True)
    total = {
        k: sum(r[k] for r in results.values())
        for k in ("published", "accepted", "terminal", "lost", "duplicate_calls")
    }
    ok = total["lost"] == 0 and total["duplicate_calls"] == 0
    shown = ("accepted", "terminal", "lost", "duplicate_calls", "seconds", "promoted_after_s")
    print(
        json.dumps(
            {
                **total,
                "ok": ok,
                "scenarios": {k: {x: v[x] for x in shown if x in v} for k, v in results.items()},
            }
        )
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
