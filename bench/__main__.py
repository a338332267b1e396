"""Benchmarks: throughput, latency, a 50,000-sensor storm, the webhook door and the footprints.

    python -m bench                    # the full run (several minutes)
    python -m bench --quick            # a few minutes (without the ledger phase)
    python -m bench --smoke            # every phase at its smallest: the test suite's run
    python -m bench --only edge_10k    # one phase alone (~30 s for this one; ledger ~60 s)

Real Mosquitto, Redis and the emulator, each a process of its own (bench/faults.py's rig), and
tripline as a separate process measured through /proc. Prints a table; the last line is one
JSON object with every figure.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import logging
import multiprocessing
import multiprocessing.queues
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import redis
from paho.mqtt.enums import CallbackAPIVersion

from bench import webhook
from bench.faults import Rig, Service, _http_json, _wait
from bench.ledger import ledger_phase
from bench.workers import workers_phase
from tripline.adapters.mqtt_io import stop_network

TERMINAL = ("called", "suppressed", "deferred")
FAST = {  # the contact center out of the way: this measures tripline itself
    "TRIPLINE__DIALER__BACKEND": "log",
    "TRIPLINE__TASKS__BACKEND": "log",
    "TRIPLINE__DIALER__RATE_PER_MINUTE": "1000000",
    "TRIPLINE__DIALER__BURST": "10000",
    "TRIPLINE__DIALER__MAX_CONCURRENCY": "64",
    "TRIPLINE__DIALER__CRITICAL_CONCURRENCY": "16",
    "TRIPLINE__STATUS__SWEEP_INTERVAL_SECONDS": "10",
    "TRIPLINE__STATUS__SWEEP_ACCEPTED_GRACE_SECONDS": "30",
    # Every alert a call: the worst case for the hot path. Fleet incidents, per-customer grouping
    # and the pending delay would turn most of these distinct-sensor alerts into cheaper
    # outcomes (the storm below runs with them, as shipped).
    "TRIPLINE__FLEET__INCIDENT_SENSORS": "100000000",
    "TRIPLINE__DIALER__GROUP_WINDOW_SECONDS": "0",
    "TRIPLINE__DIALER__PENDING_SECONDS": "{ critical = 0, high = 0, normal = 0, low = 0 }",
}
WEBHOOK = {  # FAST, but every alert a Genesys callback at the emulator (bench/webhook.py)
    **FAST,
    "TRIPLINE__DIALER__BACKEND": "genesys",  # every priority
    # Calling windows would make a task of the alerts of customers where it is night now.
    "TRIPLINE__COMPLY__SAFETY_OVERRIDE_ALERT_TYPES": '["temp_high"]',
    "TRIPLINE__CRM__SYNC_INTERVAL_SECONDS": "3600",
    "TRIPLINE__MQTT__TOPIC": "bench/webhook/none/+/alerts",  # nothing is published there
}

# The phases after the footprint and the single-process throughput, in the order they run.
PHASES = (
    "throughput_2",
    "workers_2",
    "latency",
    "latency_fsync_always",
    "latency_sustainable",
    "latency_loaded",
    "storm",
    "webhook",
    "edge_10k",
    "ledger",
)

FULL_ONLY = {"ledger"}  # left out of a quick run (~60 s: bench/ledger.py)


def _with(service: Service, env: dict[str, str]) -> Service:
    """`service` with `env` over its environment.

    Service(**env) does not type-check: a dict of str could name Service's own arguments.
    """
    service.env.update(env)
    return service


def _proc_status(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "Threads"):
            out[key] = int(value.split()[0])
    return out


def _alert(key: str, sensor: str, customer: str, alert_type: str = "temp_high") -> bytes:
    return orjson.dumps(
        {
            "idempotencyKey": key,
            "sensorId": sensor,
            "customerId": customer,
            "alertType": alert_type,
            "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
            "telemetryData": {"currentValue": 9.5, "threshold": 8.0, "unit": "celsius"},
        }
    )


def _publisher(port: int, name: str) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def _publish_paced(
    client: mqtt.Client,
    root: str,
    tag: str,
    *,
    sensors: int,
    within: float,
    started: float,
    confirm_s: float,
) -> None:
    """One alert from each of `sensors` sensors, spread evenly over `within` seconds.

    Sensors are `<tag>-<n>`, their keys the same in lower case; the first is sent at `started`
    (perf_counter). Returns once the broker confirmed them all (each waited up to `confirm_s`).
    """
    infos = []
    for n in range(sensors):
        if (delay := started + n * within / sensors - time.perf_counter()) > 0:
            time.sleep(delay)
        sensor = f"{tag}-{n}"
        infos.append(
            client.publish(
                f"{root}/sensors/{sensor}/alerts",
                _alert(sensor.lower(), sensor, f"CUST-{n % CUSTOMERS}"),
                qos=1,
            )
        )
    for info in infos:
        info.wait_for_publish(confirm_s)


def _publish_backlog(port: int, messages: list[tuple[str, bytes]]) -> None:
    client = _publisher(port, f"bench-pub-{uuid.uuid4().hex[:6]}")
    # In chunks: message ids wrap at 65,535, and paho refuses one still in flight.
    for at in range(0, len(messages), 50_000):
        infos = [client.publish(t, b, qos=1) for t, b in messages[at : at + 50_000]]
        for info in infos:
            info.wait_for_publish(60)
    client.disconnect()
    stop_network(client)


def _discard_session(port: int, client_id: str) -> None:
    """Drop a session and what is still queued in it (a clean start, expiring at once)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", port, clean_start=True)
    client.loop_start()
    client.disconnect()
    stop_network(client)


def _fresh(rig: Rig) -> None:
    """Start a phase on an empty Redis and a short append-only file.

    What earlier phases stored (a 60 s run leaves hundreds of thousands of records) made Redis
    fork a large process to rewrite its append-only file, and those stalls, not tripline,
    became the next phase's latency tail.
    """
    client = redis.Redis(port=rig.redis_port)
    client.flushall()
    client.bgrewriteaof()
    _wait(lambda: not client.info("persistence")["aof_rewrite_in_progress"], 60, "aof rewrite")
    client.close()


def _session(port: int, client_id: str, topic: str) -> None:
    """Create a persistent session subscribed to `topic`, then leave it offline."""
    from paho.mqtt.packettypes import PacketTypes  # noqa: PLC0415
    from paho.mqtt.properties import Properties  # noqa: PLC0415

    done = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.on_subscribe = lambda *_: done.set()
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600
    client.connect("127.0.0.1", port, clean_start=False, properties=props)
    client.loop_start()
    client.subscribe(topic, qos=1)
    done.wait(10)
    client.disconnect()
    stop_network(client)


def bare_drain(rig: Rig, messages: list[tuple[str, bytes]], topic: str) -> float:
    """Alerts/s a bare paho QoS 1 subscriber drains from a backlog on the same broker."""
    from paho.mqtt.packettypes import PacketTypes  # noqa: PLC0415
    from paho.mqtt.properties import Properties  # noqa: PLC0415

    client_id = f"bare-{uuid.uuid4().hex[:6]}"
    _session(rig.mqtt_port, client_id, topic)
    _publish_backlog(rig.mqtt_port, messages)
    received, done = [0], threading.Event()
    first: list[float] = []

    def on_message(*_: object) -> None:
        if not first:
            first.append(time.perf_counter())
        received[0] += 1
        if received[0] == len(messages):
            done.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.on_message = on_message
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600
    props.ReceiveMaximum = 1000
    client.connect("127.0.0.1", rig.mqtt_port, clean_start=False, properties=props)
    client.loop_start()
    done.wait(600)
    elapsed = time.perf_counter() - first[0]
    client.disconnect()
    stop_network(client)
    return len(messages) / elapsed


def accept_only(rig: Rig, messages: list[tuple[str, bytes]], topic: str) -> float:
    """Alerts/s tripline's subscriber drains when accepting is all it does (the same backlog).

    The real subscriber actor and accept path: validate, the idempotency claim and the durable
    record in Redis, then the acknowledgement; nothing routed on. What any design keeping
    promise 1 (acknowledged only once recorded) pays per alert before deciding anything.
    """
    from tripline.actors.mqtt_subscriber import MqttSubscriber, wait_connected  # noqa: PLC0415
    from tripline.adapters.store import Keys  # noqa: PLC0415
    from tripline.conf.schema import MqttConfig  # noqa: PLC0415
    from tripline.pipeline.prioritise import PriorityRules  # noqa: PLC0415
    from tripline.pipeline.validate import Limits  # noqa: PLC0415
    from tripline.service.accept import Acceptor  # noqa: PLC0415
    from tripline.service.stats import Stats  # noqa: PLC0415

    logging.getLogger("tripline").setLevel(logging.ERROR)  # its disconnect warning: not a figure
    client_id = f"accept-{uuid.uuid4().hex[:6]}"
    _session(rig.mqtt_port, client_id, topic)
    _publish_backlog(rig.mqtt_port, messages)
    stats = Stats()
    acceptor = Acceptor(
        client=redis.Redis(port=rig.redis_port),
        keys=Keys(f"a{client_id}"),
        limits=Limits(),
        rules=PriorityRules(),
        record_ttl=3600,
        stats=stats,
        clock=time.time,
    )
    conf = MqttConfig(port=rig.mqtt_port, client_id=client_id, topic=topic)
    ref = MqttSubscriber.start(conf=conf, acceptor=acceptor, route=lambda *_: None)
    try:
        wait_connected(ref, 10)
        first = None
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            accepted = stats.total("accepted")
            if first is None and accepted:
                first = (time.perf_counter(), accepted)
            if accepted >= len(messages):
                break
            time.sleep(0.01)
        assert first is not None
        return (stats.total("accepted") - first[1]) / (time.perf_counter() - first[0])
    finally:
        ref.stop()
        _fresh(rig)  # its records would make Redis rewrite its file during tripline's run


def _counts(service: Service) -> dict[str, Any]:
    status = _http_json("GET", f"http://127.0.0.1:{service.port}/status")
    counters = status["counters"]
    terminal = sum(sum(counters.get(o, {}).values()) for o in TERMINAL)
    # Waiting calls are not decided yet; waiting tasks are (their outcome is deferred already).
    queued = status.get("callsUndecided", 0)
    return {
        "terminal": terminal,
        "queued": queued,
        "accepted": sum(counters.get("accepted", {}).values()),
    }


CUSTOMERS = 10_000


def _warm(service: Service) -> None:
    """Wait until the service's CRM prefetch has cached every emulated customer."""

    def warmed() -> bool:
        status = _http_json("GET", f"http://127.0.0.1:{service.port}/status")
        return (status["crm"]["cacheWarmedWith"] or 0) >= CUSTOMERS

    _wait(warmed, 60, "cache warm")


def backlog(topic_root: str, run: str, count: int) -> list[tuple[str, bytes]]:
    """`count` alerts of distinct sensors over CUSTOMERS customers: (topic, payload) each."""
    return [
        (
            f"{topic_root}/sensors/S-{run}-{n}/alerts",
            _alert(f"{run}-{n}", f"S-{run}-{n}", f"CUST-{n % CUSTOMERS}"),
        )
        for n in range(count)
    ]


def throughput(
    rig: Rig, count: int, instances: int = 1, window: float | None = None
) -> dict[str, Any]:
    """Drain a backlog of `count` alerts (distinct sensors and customers) to terminal outcomes.

    With `window`, the rate is what was decided in that many seconds from the first alert
    accepted (the backlog is sized to outlast it: a sustained rate, not a burst). With
    `instances` > 1, that many processes share the subscription (MQTT 5 shared group), the way
    docs/deployment.md scales out, here on the one machine's cores.
    """
    run = uuid.uuid4().hex[:6]
    prefix, topic_root = f"b{run}", f"bench/{run}"
    topic = f"{topic_root}/sensors/+/alerts"
    messages = backlog(topic_root, run, count)
    bare = bare_drain(rig, messages, topic)
    ceiling = accept_only(rig, messages, topic) if instances == 1 else 0
    _http_json("PUT", f"{rig.emu}/_emulator/settings", {"synthetic_customers": CUSTOMERS})
    group = "bench" if instances > 1 else ""
    services = [
        _with(
            Service(
                rig,
                prefix,
                f"tl-{run}-{n}",
                group,
                TRIPLINE__MQTT__TOPIC=topic,
                TRIPLINE__CRM__SYNC_INTERVAL_SECONDS="3600" if n == 0 else "0",
            ),
            FAST,
        )
        for n in range(instances)
    ]
    service = services[0]
    for each in services:
        each.start()  # creates the sessions; the first warms the CRM cache all of them share
    _warm(service)
    for each in services:
        each.stop()
    _publish_backlog(rig.mqtt_port, messages)
    for each in services:
        each.start()
    started = time.perf_counter()
    first = None
    while True:
        per = [_counts(each) for each in services]
        counts = {k: sum(c[k] for c in per) for k in per[0]}
        if first is None and counts["accepted"] > 0:
            first = time.perf_counter()
        if counts["terminal"] >= count:
            break
        if window and first is not None and time.perf_counter() - first >= window:
            break
        if time.perf_counter() - started > 900:
            break
        time.sleep(0.05)
    elapsed = time.perf_counter() - (first or started)
    for each in services:
        each.stop()
        _discard_session(rig.mqtt_port, each.env["TRIPLINE__MQTT__CLIENT_ID"])  # the rest
    rate = counts["terminal"] / elapsed
    return {
        "instances": instances,
        "alerts": count,
        "decided": counts["terminal"],
        "tripline_per_s": round(rate),
        "bare_subscriber_per_s": round(bare),
        "ratio": round(rate / bare, 3),
        **({"accept_only_per_s": round(ceiling)} if ceiling else {}),
        "seconds": round(elapsed, 1),
    }


def latency(
    rig: Rig, seconds: float, background_per_s: int = 1000, fsync: str = "everysec"
) -> dict[str, Any]:
    """Critical alerts to the emulator's callback arrival, under a background of alerts/s.

    Redis appends with `fsync` meanwhile: `everysec` as docs/deployment.md recommends for a
    gateway, or `always`, whose per-write disk flush the same run also shows.
    """
    client = redis.Redis(port=rig.redis_port)
    client.config_set("appendfsync", fsync)
    try:
        return {**_latency(rig, seconds, background_per_s), "appendfsync": fsync}
    finally:
        client.config_set("appendfsync", rig.fsync)
        client.close()


def _latency(rig: Rig, seconds: float, background_per_s: int) -> dict[str, Any]:
    run = uuid.uuid4().hex[:6]
    prefix, root = f"l{run}", f"bench/{run}"
    service = _with(
        Service(rig, prefix, f"tl-{run}"),
        {
            **FAST,
            "TRIPLINE__DIALER__BACKENDS": '{ critical = "genesys" }',
            "TRIPLINE__MQTT__TOPIC": f"{root}/sensors/+/alerts",
            "TRIPLINE__COMPLY__SAFETY_OVERRIDE_ALERT_TYPES": '["co_alarm"]',
            "TRIPLINE__CRM__SYNC_INTERVAL_SECONDS": "3600",
        },
    )
    _http_json("PUT", f"{rig.emu}/_emulator/settings", {"synthetic_customers": CUSTOMERS})
    service.start()
    _warm(service)  # the hot path, as in the throughput run
    _http_json("DELETE", f"{rig.emu}/_emulator/requests")
    # The background load comes from a process of its own: in this one, its publishing would
    # compete for the interpreter lock with the critical publishes being timed.
    stop = multiprocessing.Event()
    loader = multiprocessing.Process(
        target=_background, args=(rig.mqtt_port, root, run, background_per_s, stop), daemon=True
    )
    loader.start()
    critical = _publisher(rig.mqtt_port, f"crit-{run}")
    sent: dict[str, float] = {}
    time.sleep(1.0)
    count = int(seconds * 10)
    for n in range(count):
        sensor = f"C-{run}-{n}"
        body = _alert(f"crit-{run}-{n}", sensor, f"CUST-{n}", alert_type="co_alarm")
        sent[sensor] = time.time()
        critical.publish(f"{root}/sensors/{sensor}/alerts", body, qos=1)
        time.sleep(0.1)

    def callbacks() -> dict[str, float]:
        return {
            r["body"]["data"]["sensorId"]: r["at"]
            for r in _http_json("GET", f"{rig.emu}/_emulator/requests")
            if r["path"] == "/api/v2/conversations/callbacks" and isinstance(r["body"], dict)
        }

    waited = time.monotonic() + 2.0  # the last ones, under the background still running
    while len(arrived := callbacks()) < count and time.monotonic() < waited:
        time.sleep(0.1)
    stop.set()
    loader.join(10)
    delays = sorted((arrived[s] - t) * 1000 for s, t in sent.items() if s in arrived)
    critical.disconnect()
    stop_network(critical)
    service.stop()
    if not delays:
        return {"critical_alerts": count, "arrived": 0, "background_per_s": background_per_s}
    return {
        "critical_alerts": count,
        "arrived": len(delays),
        "p50_ms": round(statistics.median(delays), 1),
        "p99_ms": round(delays[min(len(delays) - 1, int(len(delays) * 0.99))], 1),
        "max_ms": round(delays[-1], 1),
        "background_per_s": background_per_s,
        # Where the critical alerts' time went inside tripline (their records' history).
        "stages_ms": webhook.stages(
            rig.redis_port, prefix, [f"crit-{run}-{n}" for n in range(count)]
        ),
    }


def _background(port: int, root: str, run: str, per_s: int, stop: Any) -> None:  # noqa: ANN401
    """Publish distinct sensors' alerts at `per_s` until `stop` is set (a process of its own)."""
    client = _publisher(port, f"bg-{run}")
    n, start = 0, time.monotonic()
    while not stop.is_set():
        if (delay := start + n / per_s - time.monotonic()) > 0:
            time.sleep(delay)
        sensor = f"B-{run}-{n}"
        client.publish(
            f"{root}/sensors/{sensor}/alerts",
            _alert(f"bg-{run}-{n}", sensor, f"CUST-{n % CUSTOMERS}"),
            qos=1,
        )
        n += 1
    client.disconnect()
    stop_network(client)


CRITICAL_EVERY = 0.5
"""Seconds between the storm's critical alerts: 2/s, half its 240/min budget."""


def _critical_probe(
    *,
    port: int,
    root: str,
    run: str,
    offset: float,
    count: int,
    ready: EventType,
    go: EventType,
    out: multiprocessing.queues.Queue[dict[str, dict[str, float]]],
) -> None:
    """Critical alerts every CRITICAL_EVERY s, `offset` s after `go`, and a bare subscriber.

    A process of its own, so the storm's publishing does not hold its timing back. The
    subscriber is session-less (clean start) and subscribed to these topics only: its queue at
    the broker is empty, so what it measures is the broker taking and routing a message while
    the storm runs, not the wait behind tripline's backlog in tripline's own session.
    """
    import socket  # noqa: PLC0415

    def nodelay(client: mqtt.Client, *_: object) -> None:
        sock = client.socket()
        if isinstance(sock, socket.socket):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    sensors = [f"C-{run}-{n}" for n in range(count)]
    # On the critical topic, read through a session of its own (README "Performance"): the
    # storm's backlog in the main session is not ahead of them.
    topics = [f"{root}/critical/{s}/alerts" for s in sensors]
    received: dict[str, float] = {}
    subscribed = threading.Event()

    def on_message(_c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        received.setdefault(msg.topic.split("/")[-2], time.time())

    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"cs-{run}", protocol=mqtt.MQTTv5)
    sub.on_connect = nodelay
    sub.on_message = on_message
    sub.on_subscribe = lambda *_: subscribed.set()
    sub.connect("127.0.0.1", port, clean_start=True)
    sub.loop_start()
    sub.subscribe([(t, 1) for t in topics])
    subscribed.wait(10)
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"cp-{run}", protocol=mqtt.MQTTv5)
    pub.on_connect = nodelay
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    ready.set()
    go.wait(120)
    start = time.monotonic() + offset
    sent: dict[str, float] = {}
    for n, (sensor, topic) in enumerate(zip(sensors, topics, strict=True)):
        if (delay := start + n * CRITICAL_EVERY - time.monotonic()) > 0:
            time.sleep(delay)
        body = _alert(f"crit-{run}-{n}", sensor, f"CUST-{n}", alert_type="co_alarm")
        sent[sensor] = time.time()
        pub.publish(topic, body, qos=1)
    deadline = time.monotonic() + 10
    while len(received) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    out.put({"sent": sent, "received": dict(received)})
    for client in (pub, sub):
        client.disconnect()
        stop_network(client)


@dataclass
class _Probe:
    """A running _critical_probe: it publishes `count` critical alerts once `go` is set."""

    count: int
    go: EventType
    out: multiprocessing.queues.Queue[dict[str, dict[str, float]]]
    process: multiprocessing.Process


def _start_probe(rig: Rig, root: str, run: str, offset: float, count: int) -> _Probe:
    """Start _critical_probe, connected and subscribed."""
    ready, go = multiprocessing.Event(), multiprocessing.Event()
    out: multiprocessing.queues.Queue[dict[str, dict[str, float]]] = multiprocessing.Queue()
    process = multiprocessing.Process(
        target=_critical_probe,
        kwargs={
            "port": rig.mqtt_port,
            "root": root,
            "run": run,
            "offset": offset,
            "count": count,
            "ready": ready,
            "go": go,
            "out": out,
        },
        daemon=True,
    )
    process.start()
    if not ready.wait(30):
        raise TimeoutError("critical probe")
    return _Probe(count, go, out, process)


def storm(rig: Rig, sensors: int, within: float) -> dict[str, Any]:
    """`sensors` distinct sensors alerting within `within` seconds, Genesys at its default rate.

    In its middle half a separate publisher adds a critical alert (co_alarm, a safety override
    as in the latency runs) every CRITICAL_EVERY s: how long those wait for their callback in a
    storm. At half the storm's contact-center budget (240/min): critical calls alone never
    exceed it, so what they wait for is tripline, not the budget they would share.
    """
    run = uuid.uuid4().hex[:6]
    prefix, root = f"s{run}", f"bench/{run}"
    service = Service(
        rig,
        prefix,
        f"tl-{run}",
        TRIPLINE__MQTT__TOPIC=f"{root}/sensors/+/alerts",
        TRIPLINE__DIALER__RATE_PER_MINUTE="240",
        TRIPLINE__DIALER__BURST="10",
        TRIPLINE__DIALER__MAX_CONCURRENCY="4",
        TRIPLINE__COMPLY__SAFETY_OVERRIDE_ALERT_TYPES='["co_alarm"]',
        TRIPLINE__MQTT__CRITICAL_TOPIC=f"{root}/critical/+/alerts",
    )
    service.start()
    probe = _start_probe(rig, root, run, within * 0.25, max(5, int(within * 0.5 / CRITICAL_EVERY)))
    assert service.proc is not None
    pid = service.proc.pid
    peak = {"threads": 0, "rss_kb": 0}
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.is_set():
            status = _proc_status(pid)
            peak["threads"] = max(peak["threads"], status["Threads"])
            peak["rss_kb"] = max(peak["rss_kb"], status["VmHWM"])
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _http_json("DELETE", f"{rig.emu}/_emulator/requests")
    client = _publisher(rig.mqtt_port, f"storm-{run}")
    started = time.perf_counter()
    probe.go.set()
    _publish_paced(
        client, root, f"ST-{run}", sensors=sensors, within=within, started=started, confirm_s=120
    )
    published_in = time.perf_counter() - started
    decided_in = None
    while time.perf_counter() - started < 300:
        counts = _counts(service)
        if counts["terminal"] + counts["queued"] >= sensors + probe.count:
            decided_in = time.perf_counter() - started
            break
        time.sleep(0.1)
    sampling.set()
    sampler.join()
    requests = _http_json("GET", f"{rig.emu}/_emulator/requests")
    calls = [
        r for r in requests if r["path"] == "/api/v2/conversations/callbacks" and r["status"] == 200
    ]
    refs = [r["body"]["data"]["referenceId"] for r in calls]
    calls = [r for r in calls if r["body"]["data"]["sensorId"].startswith("ST-")]  # not the probe's
    window = time.perf_counter() - started
    cc = [r for r in requests if r["path"].startswith(("/oauth/token", "/api/v2/"))]
    client.disconnect()
    stop_network(client)
    accepted = _recorded(rig, [f"{prefix}:{{a:st-{run}-{n}}}:rec" for n in range(sensors)])
    critical = _storm_criticals(rig, prefix, run, probe, wait=20 if within < 5 else 60)
    # Its queue waits for the 240/min budget: a graceful stop would spend its whole 10 s drain
    # on it. What it holds is in Redis already, and nothing after this phase reads it.
    service.kill()
    return {
        "sensors": sensors,
        "published_in_s": round(published_in, 1),
        "decided_in_s": round(decided_in, 1) if decided_in else None,
        "peak_rss_mb": round(peak["rss_kb"] / 1024, 1),
        "peak_threads": peak["threads"],
        "callbacks": len(calls),
        "cc_requests": len(cc),
        "budget_allows": int(10 + 240 * window / 60),
        "duplicates": len(refs) - len(set(refs)),
        "lost": sensors - accepted,
        **critical,
    }


def _recorded(rig: Rig, keys: list[str]) -> int:
    """How many of these records exist."""
    records = redis.Redis(port=rig.redis_port)
    pipe = records.pipeline(transaction=False)
    for key in keys:
        pipe.exists(key)
    found: int = sum(pipe.execute())
    records.close()
    return found


def _storm_criticals(rig: Rig, prefix: str, run: str, probe: _Probe, wait: float) -> dict[str, Any]:
    """The storm's critical alerts: publish -> callback, and where that time went.

    `critical_broker_*`: publish -> a fresh session-less subscriber of the same topics has it
    (the broker under the storm, with no queue of its own to wait in). `critical_accepted_*`:
    publish -> tripline's record says accepted, i.e. the broker's FIFO of tripline's session
    (the storm's alerts ahead of it) plus tripline's subscriber and accept; the difference to the
    former is what the backlog ahead of a critical alert costs it. The rest from the records'
    own history (accepted -> queued -> dialing -> called).
    """
    got = probe.out.get(timeout=60)
    probe.process.join(10)
    sent, received = got["sent"], got["received"]

    def callbacks() -> dict[str, float]:
        return {
            r["body"]["data"]["sensorId"]: r["at"]
            for r in _http_json("GET", f"{rig.emu}/_emulator/requests")
            if r["path"] == "/api/v2/conversations/callbacks"
            and r["status"] == 200
            and r["body"]["data"]["sensorId"].startswith(f"C-{run}-")
        }

    deadline = time.monotonic() + wait  # the budget (240/min) sets their pace
    while len(arrived := callbacks()) < len(sent) and time.monotonic() < deadline:
        time.sleep(0.25)
    delays = sorted((arrived[s] - t) * 1000 for s, t in sent.items() if s in arrived)
    broker = [(received[s] - t) * 1000 for s, t in sent.items() if s in received]
    records = redis.Redis(port=rig.redis_port)
    pipe = records.pipeline(transaction=False)
    keys = [f"crit-{run}-{n}" for n in range(len(sent))]
    for key in keys:
        pipe.lindex(f"{prefix}:{{a:{key}}}:hist", 0)
    accepted = [
        (datetime.fromisoformat(orjson.loads(h)["at"]).timestamp() - sent[f"C-{run}-{n}"]) * 1000
        for n, h in enumerate(pipe.execute())
        if h is not None
    ]
    records.close()
    out: dict[str, Any] = {
        "critical_count": len(sent),
        "critical_planned": probe.count,
        "critical_arrived": len(delays),
    }
    if delays:
        out["critical_p50_ms"] = round(statistics.median(delays), 1)
        out["critical_p99_ms"] = round(delays[min(len(delays) - 1, int(len(delays) * 0.99))], 1)
        out["critical_max_ms"] = round(delays[-1], 1)
    for name, values in (("broker", broker), ("accepted", accepted)):
        if values:
            q = webhook.quantiles(values)
            out[f"critical_{name}_p50_ms"], out[f"critical_{name}_p99_ms"] = q["p50"], q["p99"]
    out["critical_stages_ms"] = webhook.stages(rig.redis_port, prefix, keys)
    return out


EDGE_SENSORS = 10_000


def edge(rig: Rig, sensors: int = EDGE_SENSORS, within: float = 10.0) -> dict[str, Any]:
    """The footprint of one site's `sensors` sensors: what a gateway must hold after they alerted.

    Each of `sensors` distinct sensors sends one alert within `within` s (customers and the CRM
    cache as in the throughput runs: CUSTOMERS of them, warmed first). Every alert a call (FAST,
    the log backends): the most each alert stores. After all are decided and a second's settling:
    the service's resident memory (and its peak), its threads, and the Redis memory its keys
    take, both as the sum of MEMORY USAGE over its key prefix and as the server's used_memory
    grown since just before the first alert (allocator overhead and expiry metadata included).
    Bounded: it gives up waiting for decisions after 60 s (`decided_in_s` None then).
    """
    run = uuid.uuid4().hex[:6]
    prefix, root = f"e{run}", f"bench/{run}"
    _http_json("PUT", f"{rig.emu}/_emulator/settings", {"synthetic_customers": CUSTOMERS})
    service = _with(
        Service(
            rig,
            prefix,
            f"tl-{run}",
            TRIPLINE__MQTT__TOPIC=f"{root}/sensors/+/alerts",
            TRIPLINE__CRM__SYNC_INTERVAL_SECONDS="3600",
        ),
        FAST,
    )
    service.start()
    _warm(service)
    assert service.proc is not None
    pid = service.proc.pid
    store = redis.Redis(port=rig.redis_port)
    used_before = int(store.info("memory")["used_memory"])
    warmed = _proc_status(pid)
    peaks = _Peaks(pid)
    peaks.start()
    client = _publisher(rig.mqtt_port, f"edge-{run}")
    started = time.perf_counter()
    _publish_paced(
        client, root, f"E-{run}", sensors=sensors, within=within, started=started, confirm_s=60
    )
    published_in = time.perf_counter() - started
    client.disconnect()
    stop_network(client)
    decided_in = None
    while time.perf_counter() - started < 60:
        counts = _counts(service)
        if counts["terminal"] + counts["queued"] >= sensors:
            decided_in = time.perf_counter() - started
            break
        time.sleep(0.1)
    time.sleep(1.0)  # the last decisions' writes and log lines
    peaks.stop()
    settled = _proc_status(pid)
    used_after = int(store.info("memory")["used_memory"])
    keys, kinds = _key_memory(store, prefix)
    key_bytes = sum(kinds.values())
    store.close()
    lost = sensors - _recorded(rig, [f"{prefix}:{{a:e-{run}-{n}}}:rec" for n in range(sensors)])
    service.stop()
    _discard_session(rig.mqtt_port, service.env["TRIPLINE__MQTT__CLIENT_ID"])
    return {
        "sensors": sensors,
        "published_in_s": round(published_in, 1),
        "decided_in_s": round(decided_in, 1) if decided_in else None,
        "lost": lost,
        "warm_rss_mb": round(warmed["VmRSS"] / 1024, 1),
        "rss_mb": round(settled["VmRSS"] / 1024, 1),
        "peak_rss_mb": round(max(peaks.rss_kb, settled["VmHWM"]) / 1024, 1),
        "threads": settled["Threads"],
        "peak_threads": max(peaks.threads, settled["Threads"]),
        "redis_keys": keys,
        "redis_keys_mb": round(key_bytes / 2**20, 1),
        "redis_used_delta_mb": round((used_after - used_before) / 2**20, 1),
        "redis_bytes_per_sensor": round(key_bytes / sensors),
        "redis_mb_by_kind": {
            kind: round(size / 2**20, 2)
            for kind, size in sorted(kinds.items(), key=lambda kv: -kv[1])
            if size >= key_bytes / 100  # the kinds of at least 1 % (all of them in the sum)
        },
    }


class _Peaks(threading.Thread):
    """A process's peak resident memory (VmHWM) and thread count, sampled every 0.1 s."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.rss_kb, self.threads = pid, 0, 0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            status = _proc_status(self.pid)
            self.threads = max(self.threads, status["Threads"])
            self.rss_kb = max(self.rss_kb, status["VmHWM"])
            time.sleep(0.1)

    def stop(self) -> None:
        self._done.set()
        self.join()


def _key_memory(store: redis.Redis, prefix: str) -> tuple[int, dict[str, int]]:
    """How many keys are under `prefix`, and the bytes MEMORY USAGE counts for them by kind.

    A key's kind is its name after the prefix with every {hash tag} and the run's sensor,
    alert and customer ids written as {}: `{}:rec`, `cooldown:{}`.
    """
    keys = [k.decode() for k in store.scan_iter(match=f"{prefix}:*", count=5000)]
    kinds: dict[str, int] = {}
    for at in range(0, len(keys), 2000):
        chunk = keys[at : at + 2000]
        pipe = store.pipeline(transaction=False)
        for key in chunk:
            pipe.memory_usage(key, samples=0)  # 0: every element of a list or hash, not a sample
        for key, size in zip(chunk, pipe.execute(), strict=True):
            kind = re.sub(r"\{[^}]*\}|(?<=:)[^:]*-[0-9a-f]{6}-[^:]*|CUST-[0-9]+", "{}", key)
            kind = kind[len(prefix) + 1 :]
            kinds[kind] = kinds.get(kind, 0) + (size or 0)
    return len(keys), kinds


def footprint(rig: Rig) -> dict[str, Any]:
    """Idle RSS and start-to-ready of a fresh instance."""
    run = uuid.uuid4().hex[:6]
    service = Service(rig, f"i{run}", f"tl-{run}", TRIPLINE__MQTT__TOPIC=f"bench/{run}/x/+/y")
    ready = service.start()
    time.sleep(2.0)
    assert service.proc is not None
    status = _proc_status(service.proc.pid)
    service.stop()
    return {
        "start_to_ready_s": round(ready, 2),
        "idle_rss_mb": round(status["VmRSS"] / 1024, 1),
        "idle_threads": status["Threads"],
    }


@dataclass(frozen=True, slots=True)
class Sizes:
    """How much each phase does: a full run, `--quick`, or `--smoke`."""

    single: int
    """The single-process drain's backlog."""
    window: float | None
    """Its measuring window (seconds), or None: until the backlog is decided."""
    drain: int
    """The two-process and two-worker drains' backlogs."""
    latency_s: float
    """Seconds of critical alerts (10 a second) per latency phase."""
    storm: tuple[int, float]
    """Sensors, and the seconds their alerts are published over."""
    webhook: int
    """Alerts per peer and client count."""
    edge: tuple[int, float]
    """Sensors, and the seconds their alerts are published over."""


SIZES = {
    "full": Sizes(200_000, 60, 60_000, 30, (50_000, 10), 10_000, (EDGE_SENSORS, 10.0)),
    "quick": Sizes(5_000, None, 10_000, 5, (10_000, 2), 2_000, (1_000, 1.0)),
    # Every phase once at the least that still runs all of it, for the test suite: its figures
    # mean nothing (a 1,000-alert drain is mostly start-up), its invariants hold at any size.
    "smoke": Sizes(1_000, None, 2_000, 1, (2_000, 1), 300, (300, 0.5)),
}


def _traceback_later() -> None:
    """BENCH_TRACEBACK_AFTER=seconds: every thread's stack on stderr after that long.

    A run stopped for taking too long then says what it was waiting for.
    """
    if after := os.environ.get("BENCH_TRACEBACK_AFTER"):
        faulthandler.dump_traceback_later(float(after), exit=False)


def main(argv: list[str] | None = None) -> int:
    _traceback_later()
    parser = argparse.ArgumentParser(description="tripline benchmarks")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="a shorter run (a few minutes)")
    size.add_argument(
        "--smoke",
        action="store_true",
        help="every phase at its smallest (~1 min; what the test suite runs): no figure to quote",
    )
    parser.add_argument(
        "--only",
        choices=PHASES,
        help="run this phase alone (with the throughput run first where it needs that figure)",
    )
    args = parser.parse_args(argv)
    short = args.quick or args.smoke
    sizes = SIZES["smoke" if args.smoke else "quick" if args.quick else "full"]
    root = Path(tempfile.mkdtemp(prefix="tripline-bench-"))
    rig = Rig(root)
    machine = {
        "cpus": _cpus(),
        "python": sys.version.split()[0],
        "mosquitto": _version(["mosquitto", "-h"]),
        "redis": _version(["redis-server", "--version"]),
    }
    try:
        results = {} if args.only else {"footprint": footprint(rig)}  # first: an empty Redis
        measured: dict[str, dict[str, Any]] = {}

        def single() -> dict[str, Any]:
            """Full: 60 s of deciding, from a backlog no machine of these sessions drains in that.

            Measured once, when first needed (`--only` a phase that does not need it skips it).
            """
            if "single" not in measured:
                measured["single"] = throughput(rig, sizes.single, window=sizes.window)
            return measured["single"]

        if not args.only:
            results["throughput"] = single()
        phases: dict[str, Callable[[], dict[str, Any]]] = {
            # The same backlog shared by two processes: the interpreter lock binds one process
            # to one core, and this machine has two (docs/deployment.md, "several instances").
            "throughput_2": lambda: throughput(rig, sizes.drain, instances=2),
            # One service, `--workers 2`: the same two cores as two instances, one command.
            "workers_2": lambda: workers_phase(rig, sizes.drain, single()["tripline_per_s"]),
            "latency": lambda: latency(rig, sizes.latency_s),
            "latency_fsync_always": lambda: latency(rig, sizes.latency_s, fsync="always"),
            # Half of what one process was just measured to sustain: what a critical alert
            # waits when the service keeps up (this machine's speed varies; a fixed rate would
            # not).
            "latency_sustainable": lambda: latency(
                rig,
                sizes.latency_s,
                background_per_s=max(50, single()["tripline_per_s"] // 100 * 50),
            ),
            # 80 % of the sustained rate: what a critical alert waits when the service is busy
            # but still keeps up (in a quick run the "sustained" rate is a 5,000-alert drain's).
            "latency_loaded": lambda: {
                **latency(
                    rig,
                    sizes.latency_s,
                    background_per_s=max(50, int(single()["tripline_per_s"] * 0.8)),
                ),
                "of_sustained": 0.8,
            },
            "storm": lambda: storm(rig, *sizes.storm),
            "webhook": lambda: webhook.compare(
                rig,
                sizes.webhook,
                tripline_env=WEBHOOK,
                warm=_warm,
                alert=_alert,
                customers=CUSTOMERS,
                workers=_cpus(),
            ),
            # A 10,000-sensor site's footprint (~20 s); a quick run checks the phase with 1,000.
            "edge_10k": lambda: edge(rig, *sizes.edge),
            # Decided/s with the ledger off, NDJSON and PostgreSQL, and Redis CPU per decision:
            # ~60 s, not in a quick run; `--only ledger` runs it alone.
            "ledger": lambda: ledger_phase(
                rig,
                count=3_000,
                rounds=3,
                fast=FAST,
                customers=CUSTOMERS,
                warm=_warm,
                backlog=backlog,
                publish=_publish_backlog,
                counts=_counts,
                discard=_discard_session,
            ),
        }
        assert tuple(phases) == PHASES
        for name, phase in phases.items():
            if args.only and name != args.only:
                continue
            if short and not args.only and name in FULL_ONLY:
                continue
            if not short:  # a short run stores too little to matter
                _fresh(rig)
            began = time.monotonic()
            results[name] = phase()
            # Progress on stderr (the figures are stdout's): a full run takes a quarter hour.
            print(f"bench: {name} done in {time.monotonic() - began:.0f} s", file=sys.stderr)
    finally:
        rig.close()
        shutil.rmtree(root, ignore_errors=True)
    for name, figures in results.items():
        for label, line in _lines(name, figures):
            print(f"{label:<11} " + "  ".join(f"{k}={v}" for k, v in line.items()))
    print(json.dumps({"quick": args.quick, "smoke": args.smoke, "machine": machine, **results}))
    return 0


def _lines(name: str, figures: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """A phase's figures as table lines: one per nested peer (the webhook phase's)."""
    flat = {k: v for k, v in figures.items() if not isinstance(v, dict)}
    lines = [(name, flat)] if flat else []
    for key, value in figures.items():
        if isinstance(value, dict):
            lines.extend(_lines(f"{name}.{key}", value))
    return lines


def _cpus() -> int:
    import os  # noqa: PLC0415

    return len(os.sched_getaffinity(0))


def _version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=5, check=False)
    except OSError:
        return "?"
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0][:60] if text else "?"


if __name__ == "__main__":
    sys.exit(main())
