"""The ledger's cost: decided alerts/s with it off and on, and Redis CPU per decision, one run.

    python -m bench --only ledger     # this phase alone (~60 s)

The same backlog shape as the throughput phase (distinct sensors over CUSTOMERS customers, every
alert a call to the log backends) is drained by one `tripline run` three times in a row: the
ledger off, on with the NDJSON files, and on with PostgreSQL (a database of the run's own on
the machine's server, over loopback; skipped when there is none). Then the three again, each
round in another order, and each variant's median run is its figure, every run's rate beside
it: the machine is shared, and the spread shows how far runs of one variant differ.

Per run: decided alerts/s (first alert accepted -> every alert decided); how long the writer
took after that to empty the outboxes (`drained_s`); per alert decided from the first alert
accepted until the ledger was drained (the writer's reads, acks and deletes counted with the
scripts' appends): Redis' own CPU (INFO cpu, user + system), the script calls' time and the
ledger's own stream commands' time (INFO commandstats: time spent in the command, which a
descheduled Redis on a busy machine inflates; the CPU figure does not), and the entries
appended. Last, `writer`: the writer alone, the one stream against an outbox per slot.
"""

from __future__ import annotations

import contextlib
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import redis
from prometheus_client import CollectorRegistry

from bench.faults import Rig, Service, _http_json, _wait
from bench.webhook import redis_cpu
from tripline.adapters.store import Keys

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
VARIANTS = ("off", "ndjson", "postgresql")


def ledger_phase(
    rig: Rig,
    *,
    count: int,
    rounds: int,
    fast: dict[str, str],
    customers: int,
    warm: Callable[[Service], None],
    backlog: Callable[[str, str, int], list[tuple[str, bytes]]],
    publish: Callable[[int, list[tuple[str, bytes]]], None],
    counts: Callable[[Service], dict[str, Any]],
    discard: Callable[[int, str], None],
    writer_count: int = 5_000,
    trickle_seconds: float = 5.0,
) -> dict[str, Any]:
    """The three variants, `rounds` times each, `count` alerts a run (bench/__main__.py's helpers).

    Redis appends with `everysec` meanwhile (docs/deployment.md's advice for a gateway): the
    ledger's appends ride in the record scripts' own writes, and what is compared here is their
    cost, not the disk's flush.
    """
    run = uuid.uuid4().hex[:6]
    prefix = f"g{run}"
    client = redis.Redis(port=rig.redis_port)
    client.config_set("appendfsync", "everysec")
    _http_json("PUT", f"{rig.emu}/_emulator/settings", {"synthetic_customers": customers})
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    out: dict[str, Any] = {"alerts": count, "rounds": rounds, "appendfsync": "everysec"}
    try:
        with _private_database(run) as pg:
            if pg is None:
                out["postgresql_skipped"] = f"no PostgreSQL at {PG_ADMIN}"
            # Each round in another order (off, ndjson, postgresql; ndjson, postgresql, off;
            # ...): no variant always runs first or last while the machine's load drifts.
            order = [
                VARIANTS[(r + i) % len(VARIANTS)]
                for r in range(rounds)
                for i in range(len(VARIANTS))
            ]
            for n, variant in enumerate(order):
                if variant == "postgresql" and pg is None:
                    continue
                ledger = {
                    "off": {"TRIPLINE__LEDGER__ENABLED": "false"},
                    "ndjson": {"TRIPLINE__LEDGER__PATH": str(rig.root / f"ledger-{run}")},
                    "postgresql": {"TRIPLINE__LEDGER__URL": pg or ""},
                }[variant]
                name = f"{run}-{n}"
                service = Service(
                    rig,
                    prefix,  # one prefix: the CRM cache is warmed once, by the first run
                    f"tl-{name}",
                    **fast,
                    TRIPLINE__MQTT__TOPIC=f"bench/{name}/sensors/+/alerts",
                    TRIPLINE__CRM__SYNC_INTERVAL_SECONDS="3600" if n == 0 else "0",
                    **ledger,
                )
                figures = _one_run(
                    rig, client, service, backlog(f"bench/{name}", name, count), first=n == 0,
                    warm=warm, publish=publish, counts=counts,
                )  # fmt: skip
                discard(rig.mqtt_port, f"tl-{name}")
                runs[variant].append(figures)
        out["writer"] = writer_cost(rig, writer_count)
        out["writer_trickle"] = writer_trickle(rig, seconds=trickle_seconds)
    finally:
        client.config_set("appendfsync", rig.fsync)
        client.close()
    for variant, got in runs.items():
        if got:  # the median run by rate, with every run's rate and Redis CPU beside it
            middle = sorted(got, key=lambda r: r["decided_per_s"])[len(got) // 2]
            out[variant] = {
                **middle,
                "each_per_s": [r["decided_per_s"] for r in got],
                "each_redis_cpu_us": [r["redis_cpu_us_per_decision"] for r in got],
            }
    base = out.get("off", {}).get("decided_per_s")
    for variant in VARIANTS[1:]:
        if base and variant in out:
            out[variant]["of_off"] = round(out[variant]["decided_per_s"] / base, 3)
    return out


def _one_run(
    rig: Rig,
    client: redis.Redis,
    service: Service,
    messages: list[tuple[str, bytes]],
    *,
    first: bool,
    warm: Callable[[Service], None],
    publish: Callable[[int, list[tuple[str, bytes]]], None],
    counts: Callable[[Service], dict[str, Any]],
) -> dict[str, Any]:
    """One drain of `messages` by `service`: its rate, the ledger's catch-up, Redis' CPU."""
    service.start()  # creates the session the backlog waits in
    if first:
        warm(service)
    service.stop()
    publish(rig.mqtt_port, messages)
    service.start()
    started, first_at = time.perf_counter(), None
    # Redis' figures from the first alert accepted (the service's start-up left out) until
    # the ledger is drained, per alert decided meanwhile.
    before: tuple[float, dict[str, tuple[int, int]]] = (0.0, {})
    decided_before = 0
    while True:
        got = counts(service)
        if first_at is None and got["accepted"]:
            first_at, before, decided_before = (
                time.perf_counter(),
                _redis_cpu(client),
                got["terminal"],
            )
        if got["terminal"] >= len(messages) or time.perf_counter() - started > 300:
            break
        time.sleep(0.05)
    decided_at = time.perf_counter()
    decided = got["terminal"]
    waiting = Keys(service.env["TRIPLINE__REDIS__KEY_PREFIX"]).ledger_entries()
    _wait(lambda: client.xlen(waiting) == 0, 120, "ledger drained")  # Redis' word, not a gauge's
    drained_at = time.perf_counter()
    after = _redis_cpu(client)
    written = _written(service)
    service.stop()
    elapsed = decided_at - (first_at or started)
    n = max(decided - decided_before, 1)
    zero = (0, 0)
    cmds = {
        name: (calls - before[1].get(name, zero)[0], usec - before[1].get(name, zero)[1])
        for name, (calls, usec) in after[1].items()
    }
    ledger_us = sum(u for name, (_, u) in cmds.items() if name in _LEDGER_COMMANDS)
    return {
        "decided": decided,
        "decided_per_s": round(decided / elapsed),
        "seconds": round(elapsed, 2),
        "drained_s": round(drained_at - decided_at, 2),
        "ledger_entries": written,
        "redis_cpu_us_per_decision": round((after[0] - before[0]) * 1e6 / n, 1),
        "scripts_us_per_decision": round(
            sum(cmds.get(s, zero)[1] for s in ("evalsha", "eval")) / n, 1
        ),
        "ledger_cmds_us_per_decision": round(ledger_us / n, 1),
        "xadd_per_decision": round(cmds.get("xadd", zero)[0] / n, 2),
    }


_LEDGER_COMMANDS = frozenset(
    {"xadd", "xreadgroup", "xack", "xdel", "xautoclaim", "xlen", "xrange", "xgroup|create"}
)
"""The ledger's own Redis commands: the scripts' appends (their XADD, counted inside the script
calls' time too) and the writer's reads, acknowledgements, deletes and lag measures."""


def _redis_cpu(client: redis.Redis) -> tuple[float, dict[str, tuple[int, int]]]:
    """Redis' CPU seconds so far (user + system), and each command's calls and usec."""
    stats = client.info("commandstats")
    per = {
        name.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"]))
        for name, v in stats.items()
    }
    return redis_cpu(client), per


def writer_cost(rig: Rig, count: int) -> dict[str, Any]:
    """The writer alone, one stream vs an outbox per slot (a cluster's), `count` decisions each.

    The record scripts as the service runs them, in pipelines of 200, on keys of `count`
    distinct alerts (so on ~`count` slots), then one writer draining them into NDJSON files:
    Redis' CPU per decision appended and per entry written, the writer's own CPU per entry.
    Why the one stream stays wherever Redis is one server: reading, acknowledging and deleting
    each slot's entries apart costs per entry what the one stream costs per batch.
    """
    from tripline.adapters.ledger.entry import PhoneHasher  # noqa: PLC0415
    from tripline.adapters.ledger.ndjson import FileStore  # noqa: PLC0415
    from tripline.adapters.redis_io import PipelinedScript, batch, execute  # noqa: PLC0415
    from tripline.adapters.store import (  # noqa: PLC0415
        ACCEPT_LUA,
        TRANSITION_LUA,
        OutboxHints,
        accept_args,
        transition_args,
    )
    from tripline.messages import Alert, Outcome, Reason  # noqa: PLC0415
    from tripline.service.ledger import LedgerWriter  # noqa: PLC0415

    client = redis.Redis(port=rig.redis_port)
    accept, transition = (
        PipelinedScript(client, ACCEPT_LUA),
        PipelinedScript(client, TRANSITION_LUA),
    )
    out: dict[str, Any] = {"decisions": count}
    try:
        for mode in ("one_stream", "slot_outboxes"):
            run = uuid.uuid4().hex[:6]
            slots = mode == "slot_outboxes"
            keys = Keys(
                f"w{run}", ledger=True, slot_outboxes=slots, hints=OutboxHints() if slots else None
            )
            now = time.time()
            alerts = [
                Alert(idempotency_key=f"w-{run}-{n}", sensor_id=f"S-{n}", customer_id=f"C-{n}",
                      alert_type="temp_high", timestamp=now, firing=True, severity="",
                      current_value=9.5, threshold=8.0, unit="celsius", reference_id=f"r-{n}",
                      telemetry_hash="0", accepted_at=now)
                for n in range(count)
            ]  # fmt: skip
            for chunk in range(0, count, 200):
                pipe = batch(client)
                for alert in alerts[chunk : chunk + 200]:
                    accept.queue(pipe, *accept_args(keys, alert, 600))
                execute(pipe, accept)
            cpu0 = _redis_cpu(client)[0]
            for chunk in range(0, count, 200):
                pipe = batch(client)
                for alert in alerts[chunk : chunk + 200]:
                    transition.queue(pipe, *transition_args(
                        keys, alert.idempotency_key, state=Outcome.SUPPRESSED, now=now,
                        reason=Reason.COOLDOWN,
                    ))  # fmt: skip
                execute(pipe, transition)
            cpu1 = _redis_cpu(client)[0]
            writer = LedgerWriter(
                client=client, keys=keys, store=FileStore(rig.root / f"writer-{run}"),
                hasher=PhoneHasher(b"bench"), consumer="bench", batch_size=500,
                retention_days=1825, registry=CollectorRegistry(),
            )  # fmt: skip
            wall0, own0 = time.perf_counter(), time.process_time()
            written, deadline = 0, time.monotonic() + 60
            while written < count and time.monotonic() < deadline:
                written += writer.run_once()
            wall1, own1 = time.perf_counter(), time.process_time()
            cpu2 = _redis_cpu(client)[0]
            out[mode] = {
                "redis_append_us_per_decision": round((cpu1 - cpu0) * 1e6 / count, 1),
                "written": written,
                "entries_per_s": round(written / (wall1 - wall0)),
                "writer_cpu_us_per_entry": round((own1 - own0) * 1e6 / max(written, 1), 1),
                "redis_us_per_entry_written": round((cpu2 - cpu1) * 1e6 / max(written, 1), 1),
            }
            client.flushall()  # what it wrote: nothing later reads it
    finally:
        client.close()
    return out


def writer_trickle(rig: Rig, rate: int = 1_000, seconds: float = 5.0) -> dict[str, Any]:
    """The writer's own thread, as the service runs it, while entries arrive `rate` a second.

    A service's entries come a few at a time, not as a backlog. Paced, as shipped (a round that
    wrote less than a batch waits 50 ms; the lag measured once a second), against every round
    taken at once (both at 0): the writer thread's CPU (user + system: its fsyncs) per entry,
    and the lag left when the producer stops.
    """
    from tripline.adapters.ledger.entry import PhoneHasher, operator_message  # noqa: PLC0415
    from tripline.adapters.ledger.ndjson import FileStore  # noqa: PLC0415
    from tripline.service import ledger  # noqa: PLC0415

    client = redis.Redis(port=rig.redis_port)
    entry = operator_message(
        action="dnc_add", at="2026-11-27T10:00:00.000Z", actor="bench", origin="cli",
        phone="+14155550100",
    )  # fmt: skip
    shipped = (ledger._PACE, ledger._LAG_EVERY)  # noqa: SLF001 - the variants measured
    out: dict[str, Any] = {"rate_per_s": rate, "seconds": seconds}
    try:
        for variant, knobs in (("paced", shipped), ("unpaced", (0.0, 0.0))):
            ledger._PACE, ledger._LAG_EVERY = knobs  # noqa: SLF001
            keys = Keys(f"t{uuid.uuid4().hex[:6]}", ledger=True)
            writer = ledger.LedgerWriter(
                client=client, keys=keys, store=FileStore(rig.root / f"trickle-{variant}"),
                hasher=PhoneHasher(b"bench"), consumer="bench", batch_size=500,
                retention_days=1825, registry=CollectorRegistry(),
            )  # fmt: skip
            own: list[float] = []
            run = writer._run  # noqa: SLF001

            def timed(run: Any = run, own: list[float] = own) -> None:  # noqa: ANN401
                start = time.thread_time()
                run()
                own.append(time.thread_time() - start)

            writer._run = timed  # type: ignore[method-assign]  # noqa: SLF001
            writer.start()
            added, start = 0, time.monotonic()
            while time.monotonic() - start < seconds:
                client.xadd(keys.ledger_entries(), {"operator": entry})
                added += 1
                time.sleep(max(0.0, start + added / rate - time.monotonic()))
            left = client.xlen(keys.ledger_entries())
            time.sleep(0.3)  # the last paced round
            writer.stop()
            written = int(writer._written._value.get())  # noqa: SLF001
            out[variant] = {
                "added": added,
                "written": written,
                "waiting_at_stop": left,
                "writer_cpu_us_per_entry": round(own[0] * 1e6 / max(written, 1), 1),
            }
            client.delete(keys.ledger_entries())
    finally:
        ledger._PACE, ledger._LAG_EVERY = shipped  # noqa: SLF001
        client.close()
    return out


def _written(service: Service) -> int:
    """The entries the service's writer wrote (its counter on /metrics)."""
    url = f"http://127.0.0.1:{service.port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as resp:
        text = resp.read().decode()
    for line in text.splitlines():
        if line.startswith("tripline_ledger_entries_written_total"):
            return int(float(line.split()[-1]))
    return 0


@contextlib.contextmanager
def _private_database(run: str) -> Iterator[str | None]:
    """A database of this run's own on the machine's PostgreSQL, migrated; None if none."""
    from tripline.adapters.ledger import postgres  # noqa: PLC0415

    name = f"tl_bench_ledger_{run}"
    try:
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"'.encode())
    except psycopg.Error:
        yield None
        return
    url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    try:
        postgres.migrate(url)
        yield url
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())
