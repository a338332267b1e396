"""One /status and one /metrics for every worker: the merges."""

from __future__ import annotations

from typing import Any

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tripline.edge.siblings import merge_metrics, merge_status
from tripline.messages import Reason
from tripline.service.stats import Stats


def _exposition(called: int, up: float) -> str:
    stats = Stats()
    stats.count("called", n=called)
    stats.count("suppressed", Reason.COOLDOWN)
    stats.stage_seconds.labels("accept").observe(0.002)
    stats.gauges["up"].labels("redis").set(up)
    return generate_latest(stats.registry).decode()


def test_metrics_are_one_family_each_with_a_worker_label() -> None:
    text = merge_metrics([_exposition(3, 1), _exposition(4, 0)]).decode()
    for line in (t for t in text.splitlines() if t.startswith("# TYPE")):
        assert text.count(line + "\n") == 1, line
    families = {f.name: f for f in text_string_to_metric_families(text)}
    called = {
        s.labels["worker"]: s.value
        for s in families["tripline_alerts"].samples
        if s.name == "tripline_alerts_total" and s.labels["outcome"] == "called"
    }
    assert called == {"0": 3.0, "1": 4.0}
    up = {s.labels["worker"]: s.value for s in families["tripline_up"].samples}
    assert up == {"0": 1.0, "1": 0.0}
    buckets = [s for s in families["tripline_stage_seconds"].samples if s.name.endswith("_bucket")]
    assert {s.labels["worker"] for s in buckets} == {"0", "1"}
    assert all("le" in s.labels for s in buckets)
    workers = {s.labels["worker"]: s.value for s in families["tripline_worker_up"].samples}
    assert workers == {"0": 1.0, "1": 1.0}


def test_a_worker_that_did_not_answer_is_down_and_absent() -> None:
    text = merge_metrics([_exposition(1, 1), None, _exposition(2, 1)]).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    workers = {s.labels["worker"]: s.value for s in families["tripline_worker_up"].samples}
    assert workers == {"0": 1.0, "1": 0.0, "2": 1.0}
    assert {s.labels["worker"] for s in families["tripline_alerts"].samples} == {"0", "2"}


def _doc(n: int, **over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "instance": f"gw-w{n}" if n else "gw",
        "healthy": True,
        "uptimeSeconds": 10.0 + n,
        "actors": {"dialer": {"status": "running", "restarts": n, "lastError": None}},
        "sensorEntities": 5,
        "counters": {"called": {"-": 2 + n}, "suppressed": {"cooldown": 1}},
        "reach": {"results": {"reached": 1, "not_reached": n}, "reachRate": 0.5},
        "dialingPaused": None,
        "fleetIncident": None,
        "queueDepth": {"critical": 0, "high": n, "normal": 1, "low": 0},
        "inFlight": 1,
        "pausedUntil": None,
        "rateBudget": {"perMinute": 240, "burst": 10, "takenHere": 7},
        "backendBreaker": "open" if n == 1 else "closed",
        "occupancy": {"occupancy": 0.1 * n, "observedAt": f"2026-01-01T00:00:0{n}.000Z"},
        "crm": {"breaker": "closed", "cacheWarmedWith": 100 if n == 0 else None},
        "events": [{"type": "e", "at": f"2026-01-01T00:00:0{n}.000Z"}],
        "maintenance": [{"id": f"from-{n}"}],
        "deadLetters": {"stream": "tl:{dlq}:deadletter", "quarantined": {"mqtt": n}},
        "recentDecisions": [{"idempotencyKey": f"k{n}", "at": 100.0 + n}],
        "pid": 1000 + n,
    }
    doc.update(over)
    return doc


def test_status_sums_the_counts_and_lists_the_workers() -> None:
    merged = merge_status([_doc(0), _doc(1)], answering=1, base_client_id="gw")
    assert merged["instance"] == "gw"
    assert merged["partial"] is False
    assert merged["healthy"] is True
    assert merged["counters"] == {"called": {"-": 5}, "suppressed": {"cooldown": 2}}
    assert merged["reach"] == {"results": {"reached": 2, "not_reached": 1}, "reachRate": 0.667}
    assert merged["queueDepth"] == {"critical": 0, "high": 1, "normal": 2, "low": 0}
    assert merged["sensorEntities"] == 10
    assert merged["inFlight"] == 2
    assert merged["rateBudget"] == {"perMinute": 240, "burst": 10, "takenHere": 14}
    assert merged["backendBreaker"] == "open"  # one worker's open breaker is open
    assert merged["crm"] == {"breaker": "closed", "cacheWarmedWith": 100}
    assert merged["occupancy"]["observedAt"].startswith("2026-01-01T00:00:01")  # the freshest
    assert merged["maintenance"] == [{"id": "from-1"}]  # shared: the answering worker's
    assert merged["deadLetters"]["quarantined"] == {"mqtt": 1}
    assert [e["at"][-6:] for e in merged["events"]] == ["1.000Z", "0.000Z"]  # newest first
    assert [d["idempotencyKey"] for d in merged["recentDecisions"]] == ["k1", "k0"]
    assert set(merged["actors"]) == {"w0/dialer", "w1/dialer"}
    assert merged["uptimeSeconds"] == 11.0
    assert "pid" not in merged
    assert merged["workers"] == [
        {
            "index": 0,
            "clientId": "gw",
            "pid": 1000,
            "up": True,
            "healthy": True,
            "uptimeSeconds": 10.0,
        },
        {
            "index": 1,
            "clientId": "gw-w1",
            "pid": 1001,
            "up": True,
            "healthy": True,
            "uptimeSeconds": 11.0,
        },
    ]


def test_status_without_a_worker_is_partial_and_unhealthy() -> None:
    merged = merge_status([_doc(0), None], answering=0, base_client_id="gw")
    assert merged["partial"] is True
    assert merged["healthy"] is False
    assert merged["counters"]["called"] == {"-": 2}
    assert merged["workers"][1] == {"index": 1, "clientId": "gw-w1", "pid": None, "up": False}


def test_status_with_nothing_called_has_no_reach_rate() -> None:
    empty: dict[str, Any] = {"results": {}, "reachRate": None}
    merged = merge_status(
        [_doc(0, reach=empty), _doc(1, reach=empty)], answering=0, base_client_id="gw"
    )
    assert merged["reach"] == empty
