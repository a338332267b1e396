"""Workers per core: one `tripline run --workers N` draining an MQTT backlog, against one process.

`workers_phase(rig, count, one_per_s)` mirrors `throughput()` in bench/__main__.py — a backlog of
`count` alerts of distinct sensors and customers, every alert a call on the log backend (FAST),
the CRM cache warmed first — but runs one service started with `--workers N` (default 2): N
processes with their own client ids (`tl-<run>`, `tl-<run>-w1`, …) in the implicit shared
subscription group, summed by whichever worker answers GET /status. `one_per_s` is the
single-process figure of the same run (throughput()'s `tripline_per_s`), for the ratio.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime
from typing import Any

import orjson
import redis

from bench.faults import Rig, Service, _http_json

_LIMIT_SECONDS = 900.0
TERMINAL_STATES = ("called", "suppressed", "deferred")


def workers_phase(
    rig: Rig,
    count: int,
    one_per_s: float | None = None,
    *,
    workers: int = 2,
    window: float | None = None,
) -> dict[str, Any]:
    """Decided alerts/s of one `tripline run --workers <workers>` on a backlog of `count`.

    Returns {"workers", "alerts", "decided", "tripline_per_s", "ratio_to_one", "seconds",
    "partial_reads"}; `ratio_to_one` is None without `one_per_s`. With `window`, the rate is
    what was decided in that many seconds from the first alert accepted, as in throughput().
    """
    from bench.__main__ import (  # noqa: PLC0415 - throughput()'s helpers; it imports this module
        CUSTOMERS,
        FAST,
        TERMINAL,
        _discard_session,
        _publish_backlog,
        _warm,
        backlog,
    )

    run = uuid.uuid4().hex[:6]
    prefix, topic_root = f"b{run}", f"bench/{run}"
    topic = f"{topic_root}/sensors/+/alerts"
    messages = backlog(topic_root, run, count)
    _http_json("PUT", f"{rig.emu}/_emulator/settings", {"synthetic_customers": CUSTOMERS})
    base = f"tl-{run}"
    service = Service(
        rig,
        prefix,
        base,
        "",  # the implicit group, as a deployment without [mqtt] shared_group gets
        f"--workers {workers}",
        **FAST,
        TRIPLINE__MQTT__TOPIC=topic,
        TRIPLINE__CRM__SYNC_INTERVAL_SECONDS="3600",  # worker 0 warms the cache all share
    )
    service.start()  # creates every worker's session in the group
    _warm(service)
    service.stop()
    _publish_backlog(rig.mqtt_port, messages)
    service.start()
    started = time.perf_counter()
    first = None
    partial = 0
    while True:
        status = _http_json("GET", f"http://127.0.0.1:{service.port}/status")
        partial += bool(status.get("partial"))
        counters = status["counters"]
        terminal = sum(sum(counters.get(o, {}).values()) for o in TERMINAL)
        if first is None and sum(counters.get("accepted", {}).values()) > 0:
            first = time.perf_counter()
        if terminal >= count:
            break
        if window and first is not None and time.perf_counter() - first >= window:
            break
        if time.perf_counter() - started > _LIMIT_SECONDS:
            break
        time.sleep(0.05)
    elapsed = time.perf_counter() - (first or started)
    span = decided_span(rig, prefix, [f"{run}-{n}" for n in range(count)])
    service.stop()
    for index in range(workers):  # what is still queued in the workers' sessions
        _discard_session(rig.mqtt_port, base if index == 0 else f"{base}-w{index}")
    rate = terminal / elapsed
    return {
        "workers": workers,
        "alerts": count,
        "decided": terminal,
        "tripline_per_s": round(rate),
        "ratio_to_one": round(rate / one_per_s, 2) if one_per_s else None,
        "seconds": round(elapsed, 1),
        # From the records: first accepted to last decided, free of /status polling's lag.
        "span_per_s": round(terminal / span) if span else None,
        "partial_reads": partial,  # /status reads missing a worker (its counts not summed)
    }


def decided_span(rig: Rig, prefix: str, keys: list[str]) -> float | None:
    """Seconds from the first alert accepted to the last decided, read from their records.

    /status answers late when the workers are saturated (each asks its actors), which shifts
    both ends of a polled measurement; the records' histories carry the service's own times.
    """
    from tripline.adapters.store import Keys  # noqa: PLC0415

    names = Keys(prefix)
    client = redis.Redis(port=rig.redis_port)
    try:
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.lrange(names.history(key), 0, -1)
        histories = pipe.execute()
    finally:
        client.close()
    accepted, decided = [], []
    for history in histories:
        entries = [orjson.loads(h) for h in history]
        accepted += [_seconds(e["at"]) for e in entries if e.get("state") == "accepted"]
        decided += [_seconds(e["at"]) for e in entries if e.get("state") in TERMINAL_STATES]
    if not accepted or not decided:
        return None
    return max(decided) - min(accepted)


def _seconds(at: str) -> float:
    return datetime.fromisoformat(at).timestamp()
