"""The README's benchmark command runs end to end (figures are the bench's to print, not ours).

Its figures are never asserted here (speed is measured by the bench, not by tests); what is
checked is that every phase ran and what must hold at any speed: nothing lost, nothing called
twice, every alert of a drain decided.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from bench.__main__ import (
    CUSTOMERS,
    FAST,
    _counts,
    _discard_session,
    _publish_backlog,
    _warm,
    backlog,
)
from bench.faults import Rig
from bench.ledger import ledger_phase
from tests.conftest import run_quick

pytestmark = [pytest.mark.integration, pytest.mark.long(110)]

PHASES = {
    "footprint",
    "throughput",
    "throughput_2",
    "workers_2",
    "latency",
    "latency_fsync_always",
    "latency_sustainable",
    "latency_loaded",
    "storm",
    "webhook",
    "edge_10k",
}


@pytest.mark.timeout(300)
def test_the_smoke_benchmark_runs_every_phase() -> None:
    # --smoke: every phase of the quick run at its smallest (the quick run took 3 minutes of
    # the suite's one worker; this checks the same phases run and the same invariants hold).
    result, figures = run_quick("bench", timeout=280, size="--smoke")
    assert result.returncode == 0, result.stderr[-3000:]
    assert figures["smoke"] is True
    assert set(figures) >= PHASES
    for drain in ("throughput", "throughput_2"):
        assert figures[drain]["decided"] == figures[drain]["alerts"], figures[drain]
        assert figures[drain]["tripline_per_s"] > 0
    assert figures["throughput"]["accept_only_per_s"] > 0
    assert figures["workers_2"]["decided"] == figures["workers_2"]["alerts"], figures["workers_2"]
    for name in ("latency", "latency_fsync_always", "latency_sustainable", "latency_loaded"):
        assert figures[name]["arrived"] > 0, figures[name]
    # The webhook door: every POSTed alert accepted and called once, with 1 and 16 clients
    # (Alertmanager beside it when Debian's package is there; the bench says when it is not).
    for clients in ("clients_1", "clients_16"):
        door = figures["webhook"][clients]["tripline"]
        assert door["not_accepted"] == 0, door
        assert door["arrived"] == door["alerts"] == figures["webhook"]["alerts"], door
    assert figures["storm"]["lost"] == 0
    assert figures["storm"]["duplicates"] == 0
    assert figures["storm"]["decided_in_s"] is not None
    # The edge footprint's smoke run (300 sensors): every alert recorded and decided, and its
    # keys found and measured under the run's prefix.
    edge = figures["edge_10k"]
    assert edge["sensors"] == 300
    assert edge["lost"] == 0
    assert edge["decided_in_s"] is not None
    assert edge["redis_keys"] >= edge["sensors"]
    assert "{}:rec" in edge["redis_mb_by_kind"]
    assert edge["rss_mb"] > 0
    assert edge["threads"] > 0


@pytest.mark.timeout(240)
def test_the_ledger_phase_runs_every_variant_and_loses_no_entry() -> None:
    # Small: the full run drains 3,000 alerts three times per variant (`--only ledger`).
    root = Path(tempfile.mkdtemp(prefix="tripline-bench-ledger-"))
    rig = Rig(root)
    try:
        figures = ledger_phase(
            rig, count=300, rounds=1, fast=FAST, customers=CUSTOMERS, warm=_warm,
            backlog=backlog, publish=_publish_backlog, counts=_counts,
            discard=_discard_session, writer_count=400, trickle_seconds=1.0,
        )  # fmt: skip
    finally:
        rig.close()
        shutil.rmtree(root, ignore_errors=True)
    assert "postgresql_skipped" not in figures  # PostgreSQL runs on these machines
    for variant in ("off", "ndjson", "postgresql"):
        assert figures[variant]["decided"] == 300, figures[variant]
        assert figures[variant]["decided_per_s"] > 0
    assert figures["off"]["ledger_entries"] == 0
    # The same alerts' entries, all of them, into either store: what was appended was written.
    assert figures["ndjson"]["ledger_entries"] >= 300
    assert figures["ndjson"]["ledger_entries"] == figures["postgresql"]["ledger_entries"]
    for mode in ("one_stream", "slot_outboxes"):
        assert figures["writer"][mode]["written"] == 400, figures["writer"]
    for variant in ("paced", "unpaced"):  # the writer's own thread: every entry written
        trickle = figures["writer_trickle"][variant]
        assert trickle["written"] == trickle["added"] > 0, figures["writer_trickle"]
