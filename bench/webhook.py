"""The webhook door against Prometheus Alertmanager 0.25: the same job, the same client, one run.

The job: `count` alerts, every one a distinct sensor, one alert per POST, sent by 1 and by 16
concurrent keep-alive clients (one aiohttp session whose connector holds that many
connections, and as many workers). tripline takes them at POST /v1/alerts (202) and turns each
into one Genesys callback at the emulator; Alertmanager takes them at POST /api/v2/alerts (200)
and, grouped by sensorId with group_wait 0s, sends each one webhook notification to a receiver
the bench runs in a process of its own. Per peer and client count: accepted POSTs/s (first send
to last answer), end-to-end/s (first send to the last callback or notification) and the
POST -> callback / notification delay per alert.
"""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import redis
from aiohttp import web

from bench.faults import Rig, Service, _free_port, _http_json, _wait

ALERTMANAGER = "/usr/bin/prometheus-alertmanager"
CLIENTS = (1, 16)
POST_SECONDS = 60.0  # the longest a sub-phase sends (Alertmanager then gets as many alerts)
DRAIN_SECONDS = 60.0  # and then waits for the last callback or notification
JSON = {"Content-Type": "application/json"}


def ensure_alertmanager() -> str | None:
    """None when Alertmanager is installed (installing it from Debian if missing), else why not."""
    if Path(ALERTMANAGER).exists():
        return None
    if shutil.which("apt-get") is None:
        return f"{ALERTMANAGER} missing and no apt-get to install it"
    try:
        out = subprocess.run(
            ["apt-get", "install", "-y", "prometheus-alertmanager"],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"apt-get install prometheus-alertmanager failed: {exc}"
    if not Path(ALERTMANAGER).exists():
        last = (out.stderr or out.stdout).strip().splitlines()
        return f"apt-get install prometheus-alertmanager failed: {last[-1] if last else out}"
    return None


def _version() -> str:
    out = subprocess.run(
        [ALERTMANAGER, "--version"], capture_output=True, text=True, timeout=10, check=False
    )
    words = (out.stdout or out.stderr).split()  # alertmanager, version 0.25.0 (branch: ...
    return words[2] if len(words) > 2 else "?"


# -- the client both peers get ------------------------------------------------------------------


async def _post_all(
    url: str, bodies: list[bytes], clients: int, expect: int
) -> tuple[list[float], float, int]:
    """POST every body (one per request) from `clients` keep-alive connections.

    Returns each body's send time (epoch seconds; 0 if never sent: POST_SECONDS ran out), the
    epoch of the last answer, and how many answers were not `expect`.
    """
    sent = [0.0] * len(bodies)
    wrong = [0]
    indexes = iter(range(len(bodies)))
    deadline = time.monotonic() + POST_SECONDS
    connector = aiohttp.TCPConnector(limit=clients, force_close=False)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def worker() -> None:
            for i in indexes:  # one iterator shared by the workers: each body is sent once
                if time.monotonic() > deadline:
                    return
                sent[i] = time.time()
                async with session.post(url, data=bodies[i], headers=JSON) as resp:
                    await resp.read()
                    if resp.status != expect:
                        wrong[0] += 1

        await asyncio.gather(*(worker() for _ in range(clients)))
    return sent, time.time(), wrong[0]


def _figures(
    sent: dict[str, float], answered: float, wrong: int, arrived: dict[str, float]
) -> dict[str, Any]:
    """Rates and delays of one sub-phase: `sent` and `arrived` by sensor, epoch seconds."""
    first = min(sent.values())
    delays = sorted((arrived[s] - t) * 1000 for s, t in sent.items() if s in arrived)
    last = max((arrived[s] for s in sent if s in arrived), default=None)
    out: dict[str, Any] = {
        "alerts": len(sent),
        "not_accepted": wrong,
        "arrived": len(delays),
        "accept_per_s": round(len(sent) / (answered - first)),
        "e2e_per_s": round(len(delays) / (last - first)) if last is not None else 0,
    }
    if delays:
        out["p50_ms"] = round(statistics.median(delays), 1)
        out["p99_ms"] = round(delays[min(len(delays) - 1, int(len(delays) * 0.99))], 1)
        out["max_ms"] = round(delays[-1], 1)
    return out


_TICK = os.sysconf("SC_CLK_TCK")


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) a live process and its live descendants have used so far."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            raw = stat.read_text()
        except OSError:  # gone meanwhile
            continue
        fields = raw[raw.rindex(")") + 2 :].split()  # after "pid (comm) "
        child = int(stat.parent.name)
        parents[child] = int(fields[1])
        times[child] = (int(fields[11]) + int(fields[12])) / _TICK
    tree, grew = {pid}, True
    while grew:
        more = {c for c, p in parents.items() if p in tree} - tree
        tree |= more
        grew = bool(more)
    return sum(times.get(p, 0.0) for p in tree)


def redis_cpu(client: redis.Redis) -> float:
    """Redis' own CPU seconds so far (INFO cpu: user + system of the server)."""
    cpu = client.info("cpu")
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


def quantiles(values: list[float]) -> dict[str, float]:
    values = sorted(values)
    return {
        "p50": round(statistics.median(values), 1),
        "p99": round(values[min(len(values) - 1, int(len(values) * 0.99))], 1),
    }


def stages(redis_port: int, prefix: str, keys: list[str]) -> dict[str, dict[str, float]]:
    """Where the alerts' time went, from their records' own history (ms, p50/p99 per step).

    Each record's history lists its states with millisecond timestamps: accepted, queued,
    dialing, then its outcome (called, ...). Read from Redis after the fact: nothing in the
    service is asked or changed.
    """
    client = redis.Redis(port=redis_port)
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.lrange(f"{prefix}:{{a:{key}}}:hist", 0, -1)
    steps: dict[str, list[float]] = {}
    for history in pipe.execute():
        entries = [orjson.loads(h) for h in history]
        times = [(e["state"], datetime.fromisoformat(e["at"]).timestamp()) for e in entries]
        for (a, at), (b, bt) in itertools.pairwise(times):
            steps.setdefault(f"{a}->{b}", []).append((bt - at) * 1000)
    client.close()
    return {step: quantiles(ms) for step, ms in steps.items()}


# -- tripline -----------------------------------------------------------------------------------


def _terminal(service: Service) -> int:
    counters = _http_json("GET", f"http://127.0.0.1:{service.port}/status")["counters"]
    return sum(sum(counters.get(o, {}).values()) for o in ("called", "suppressed", "deferred"))


def _tripline(
    rig: Rig,
    service: Service,
    *,
    count: int,
    clients: int,
    alert: Callable[[str, str, str], bytes],
    customers: int,
) -> dict[str, Any]:
    run = uuid.uuid4().hex[:6]
    sensors = [f"W-{run}-{n}" for n in range(count)]
    keys = [f"w-{run}-{n}" for n in range(count)]
    bodies = [
        alert(k, s, f"CUST-{n % customers}")
        for n, (k, s) in enumerate(zip(keys, sensors, strict=True))
    ]
    _http_json("DELETE", f"{rig.emu}/_emulator/requests")
    before = _terminal(service)
    url = f"http://127.0.0.1:{service.port}/v1/alerts"
    assert service.proc is not None
    records = redis.Redis(port=rig.redis_port)
    cpu_before = tree_cpu(service.proc.pid), redis_cpu(records)
    times, answered, wrong = asyncio.run(_post_all(url, bodies, clients, 202))
    cpu_accepted = tree_cpu(service.proc.pid), redis_cpu(records)
    sent = {s: t for s, t in zip(sensors, times, strict=True) if t}
    # /status is polled (every worker's, merged); the emulator's request list is read once,
    # when all are decided.
    deadline = time.monotonic() + DRAIN_SECONDS
    while _terminal(service) - before < len(sent) - wrong and time.monotonic() < deadline:
        time.sleep(0.25)  # each /status merges every worker: not free
    cpu_after = tree_cpu(service.proc.pid), redis_cpu(records)
    records.close()
    arrived = {
        r["body"]["data"]["sensorId"]: r["at"]
        for r in _http_json("GET", f"{rig.emu}/_emulator/requests")
        if r["path"] == "/api/v2/conversations/callbacks"
        and r["status"] == 200
        and isinstance(r["body"], dict)
    }
    figures = _figures(sent, answered, wrong, arrived)
    # What each alert cost, in CPU: the service's processes (every worker) and Redis, while
    # the POSTs were answered, and in all until the last was decided (the /status polls and
    # the emulator's side are not in it).
    n = max(1, len(sent))
    figures["cpu_ms_per_alert"] = {
        "accept": round((cpu_accepted[0] - cpu_before[0]) * 1000 / n, 3),
        "total": round((cpu_after[0] - cpu_before[0]) * 1000 / n, 3),
        "redis_total": round((cpu_after[1] - cpu_before[1]) * 1000 / n, 3),
    }
    prefix = service.env["TRIPLINE__REDIS__KEY_PREFIX"]
    figures["stages_ms"] = stages(
        rig.redis_port, prefix, [k for k, t in zip(keys, times, strict=True) if t]
    )
    return figures


# -- Alertmanager -------------------------------------------------------------------------------


def _receiver(port: int, ready: EventType) -> None:
    """The webhook receiver (a process of its own): first arrival per sensorId, and a count."""
    arrivals: dict[str, float] = {}
    notifications = [0]

    async def hook(request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        now = time.time()
        notifications[0] += 1
        for each in body.get("alerts", []):
            arrivals.setdefault(each["labels"]["sensorId"], now)
        return web.Response(status=200)

    async def count(_request: web.Request) -> web.Response:
        return web.json_response({"notifications": notifications[0], "sensors": len(arrivals)})

    async def read(_request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(arrivals), content_type="application/json")

    async def clear(_request: web.Request) -> web.Response:
        arrivals.clear()
        notifications[0] = 0
        return web.json_response({"cleared": True})

    async def started(_app: web.Application) -> None:
        ready.set()

    app = web.Application()
    app.add_routes(
        [
            web.post("/hook", hook),
            web.get("/count", count),
            web.get("/arrivals", read),
            web.delete("/arrivals", clear),
        ]
    )
    app.on_startup.append(started)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


class Alertmanager:
    """Alertmanager with one route (grouped by sensorId, no wait) to the bench's receiver."""

    def __init__(self, root: Path) -> None:
        self.port, self.hook_port = _free_port(), _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.hook = f"http://127.0.0.1:{self.hook_port}"
        ready = multiprocessing.Event()
        self.receiver = multiprocessing.Process(
            target=_receiver, args=(self.hook_port, ready), daemon=True
        )
        self.receiver.start()
        if not ready.wait(20):
            raise TimeoutError("webhook receiver")
        (root / "am").mkdir()
        config = root / "alertmanager.yml"
        config.write_text(
            "route:\n  receiver: hook\n  group_by: [sensorId]\n  group_wait: 0s\n"
            "  group_interval: 1s\n  repeat_interval: 1h\n"
            "receivers:\n  - name: hook\n    webhook_configs:\n"
            f"      - url: {self.hook}/hook\n        send_resolved: false\n"
        )
        self.log = (root / "alertmanager.log").open("ab")
        self.proc = subprocess.Popen(
            [
                ALERTMANAGER,
                f"--config.file={config}",
                f"--storage.path={root / 'am'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=",
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )
        _wait(self._ready, 30, "alertmanager ready")

    def _ready(self) -> bool:
        try:
            with _urlopen(f"{self.url}/-/ready") as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()
        self.receiver.terminate()
        self.receiver.join(10)


def _urlopen(url: str) -> Any:  # noqa: ANN401
    import urllib.request  # noqa: PLC0415

    return urllib.request.urlopen(url, timeout=5)  # noqa: S310 - loopback


def _alertmanager(am: Alertmanager, count: int, clients: int, customers: int) -> dict[str, Any]:
    run = uuid.uuid4().hex[:6]
    sensors = [f"W-{run}-{n}" for n in range(count)]
    now = datetime.now(UTC).isoformat(timespec="seconds")
    bodies = [
        orjson.dumps(
            [
                {
                    "labels": {
                        "alertname": "temp_high",
                        "sensorId": s,
                        "customerId": f"CUST-{n % customers}",
                    },
                    "annotations": {"currentValue": "9.5", "threshold": "8.0", "unit": "celsius"},
                    "startsAt": now,
                }
            ]
        )
        for n, s in enumerate(sensors)
    ]
    _http_json("DELETE", f"{am.hook}/arrivals")
    cpu_before = tree_cpu(am.proc.pid)
    times, answered, wrong = asyncio.run(_post_all(f"{am.url}/api/v2/alerts", bodies, clients, 200))
    cpu_accepted = tree_cpu(am.proc.pid)
    sent = {s: t for s, t in zip(sensors, times, strict=True) if t}
    deadline = time.monotonic() + DRAIN_SECONDS
    while (
        _http_json("GET", f"{am.hook}/count")["sensors"] < len(sent) - wrong
        and time.monotonic() < deadline
    ):
        time.sleep(0.25)  # as tripline's is polled
    cpu_after = tree_cpu(am.proc.pid)
    arrived = _http_json("GET", f"{am.hook}/arrivals")
    figures = _figures(sent, answered, wrong, arrived)
    n = max(1, len(sent))  # Alertmanager alone (the receiver is the bench's)
    figures["cpu_ms_per_alert"] = {
        "accept": round((cpu_accepted - cpu_before) * 1000 / n, 3),
        "total": round((cpu_after - cpu_before) * 1000 / n, 3),
    }
    figures["notifications"] = _http_json("GET", f"{am.hook}/count")["notifications"]
    return figures


# -- the phase ----------------------------------------------------------------------------------


FSYNC = "everysec"
"""Redis' appendfsync during the comparison (docs/deployment.md's setting for a gateway)."""


def compare(
    rig: Rig,
    count: int,
    *,
    tripline_env: dict[str, str],
    warm: Callable[[Service], None],
    alert: Callable[[str, str, str], bytes],
    customers: int,
    workers: int = 1,
) -> dict[str, Any]:
    """Both peers, 1 then 16 clients each, tripline first in each pair; the ratios per pair.

    tripline runs `--workers <workers>`: main() passes the machine's cores, as `tripline run`
    does by default (Alertmanager, one Go process, uses them all too).
    """
    skipped = ensure_alertmanager()
    if skipped:
        print(f"webhook: the Alertmanager comparison was SKIPPED ({skipped}); tripline only")
    run = uuid.uuid4().hex[:6]
    _http_json(
        "PUT",
        f"{rig.emu}/_emulator/settings",
        {"synthetic_customers": customers, "rate_limit_per_minute": 0},
    )
    service = Service(rig, f"w{run}", f"tl-{run}", args=f"--workers {workers}")
    service.env.update(tripline_env)
    service.start()
    root = Path(tempfile.mkdtemp(prefix="tripline-bench-am-"))
    am: Alertmanager | None = None
    results: dict[str, Any] = {
        "alerts": count,
        "tripline_workers": workers,
        "appendfsync": FSYNC,
    }
    records = redis.Redis(port=rig.redis_port)
    # As docs/deployment.md sets it up (and the latency runs measure): a gateway's Redis
    # flushes its append-only file every second. Alertmanager writes nothing per alert.
    records.config_set("appendfsync", FSYNC)
    try:
        warm(service)
        if not skipped:
            am = Alertmanager(root)
            results["alertmanager_version"] = _version()
        for clients in CLIENTS:
            pair: dict[str, Any] = {
                "tripline": _tripline(
                    rig, service, count=count, clients=clients, alert=alert, customers=customers
                )
            }
            if am is not None:  # the same job: as many alerts as tripline was sent in its time
                peer = _alertmanager(am, pair["tripline"]["alerts"], clients, customers)
                pair["alertmanager"] = peer
                for figure, ratio in (("accept_per_s", "accept_ratio"), ("e2e_per_s", "e2e_ratio")):
                    if peer[figure]:
                        pair[ratio] = round(pair["tripline"][figure] / peer[figure], 3)
            else:
                pair["alertmanager"] = None
                pair["skipped"] = skipped
            results[f"clients_{clients}"] = pair
    finally:
        records.config_set("appendfsync", rig.fsync)
        records.close()
        if am is not None:
            am.close()
        service.stop()
        shutil.rmtree(root, ignore_errors=True)
    return results
