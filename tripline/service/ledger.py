"""The ledger writer: moves entries from Redis' outboxes into the ledger's store.

Record scripts append an entry in the same atomic step as the change it proves
(tripline/adapters/store.py LEDGER_APPEND): to the one stream `<prefix>:{ledger}:entries` on one
Redis or behind Sentinel, and on a Redis Cluster — where a script may touch one slot only — to
the outbox of the record's own slot (`<prefix>:{o<n>}:ledger`, one per slot, Keys.outbox).
Operator actions append theirs to the one stream, with the action. Nothing on the path of an
alert waits for the store: entries wait in Redis until the store has them.

Every instance runs a writer, one consumer of the group `ledger` on every outbox: an entry is
written by one of them, acknowledged and deleted only once its batch is durable in the store
(a replay after a crash inserts nothing: the store keys entries by their outbox and stream
id), and the entries an instance read but never acknowledged (it died) are claimed by another
after `_CLAIM_IDLE_MS`. On a cluster a writer reads the outboxes its own process's scripts
were just given (OutboxHints) and, every `_SWEEP_EVERY`, looks at all 16,384 (XLEN, a round
trip per node): that sweep finds what other processes left, measures the lag, and claims a
dead writer's entries.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
from prometheus_client import CollectorRegistry, Counter, Gauge

from tripline.adapters.ledger.entry import PhoneHasher, from_stream, hasher_for
from tripline.adapters.ledger.ndjson import FileStore
from tripline.adapters.ledger.postgres import PostgresStore
from tripline.adapters.ledger.query import MAX_PAGE, LedgerQuery, LedgerStore
from tripline.adapters.redis_clients import SyncRedis
from tripline.adapters.redis_io import batch, execute
from tripline.adapters.store import SLOTS, Keys, iso, text
from tripline.conf.schema import Config, LedgerConfig

log = logging.getLogger("tripline.ledger")

GROUP = "ledger"
_CLAIM_IDLE_MS = 60_000
"""An entry read but not acknowledged for this long belongs to a dead writer: claimed."""
_PURGE_EVERY = 3600.0
_BACKOFF_MAX = 10.0
_SWEEP_EVERY = 5.0
"""Seconds between two looks at every outbox: the lag measured, a dead writer's entries claimed,
what the hints missed found (16,384 XLENs on a cluster: ~20 ms of one core, measured)."""
_HINT_PATIENCE = 2.0
"""How long an outbox hinted but found empty is read again: its script may not have run yet."""
_IDLE_WAIT = 0.1
"""The pause after a round that found nothing without blocking on the one stream."""
_PACE = 0.05
"""The pause after a round that wrote less than a batch: a round costs the same few round trips
and an fsync whatever its size, and entries arriving one at a time under load made rounds of
one or two (~0.18 ms of CPU per alert in every worker, measured); paced, they come in fatter
batches. The ledger is an audit trail: 50 ms later is nothing to it."""
_LAG_EVERY = 1.0
"""Seconds between two measures of the lag on the one stream (two commands each)."""

Held = tuple[str, str, dict[str, Any]]
"""An entry read and not yet acknowledged: its outbox, its stream id, its fields."""


class LedgerWriter:
    """One instance's consumer of the ledger's outboxes; a thread of its own."""

    def __init__(
        self,
        *,
        client: SyncRedis,
        keys: Keys,
        store: LedgerStore,
        hasher: PhoneHasher,
        consumer: str,
        batch_size: int,
        retention_days: int,
        registry: CollectorRegistry,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Keep collaborators; start() starts the thread."""
        self._redis, self._keys, self._store, self._hasher = client, keys, store, hasher
        self.key = keys.ledger_entries()
        self._outboxes = keys.outboxes()
        # An entry's identity in the store: its stream id, prefixed with its slot in an outbox.
        self._slot_of = {keys.outbox(n): n for n in range(SLOTS)} if keys.slot_outboxes else {}
        self._consumer, self._batch, self._retention = consumer, batch_size, retention_days
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._held: list[Held] = []  # read, not yet in the store
        self._own_pending = True  # after a restart: what this consumer read before, first
        self._grouped: set[str] = set()  # outboxes known to have the group
        self._due: dict[str, None] = {}  # outboxes with more to read (ordered)
        self._claim: dict[str, None] = {}  # non-empty outboxes: dead writers' entries, own ones
        self._swept_at = self._measured_at = float("-inf")
        self._purged_at = 0.0
        self.store_ok = True
        self.last_error = ""
        self.lag_entries, self.lag_seconds = 0, 0.0
        self._written = Counter(
            "tripline_ledger_entries_written", "Entries written to the ledger", registry=registry
        )
        self._failures = Counter(
            "tripline_ledger_write_failures",
            "Batches the ledger's store refused (retried until written)",
            registry=registry,
        )
        self._lag_entries = Gauge(
            "tripline_ledger_lag_entries",
            "Entries waiting in Redis for the ledger (every outbox)",
            registry=registry,
        )
        self._lag_seconds = Gauge(
            "tripline_ledger_lag_seconds",
            "Age of the oldest entry waiting in Redis for the ledger (every outbox)",
            registry=registry,
        )

    def start(self) -> None:
        """Start the writer's thread."""
        self._thread = threading.Thread(target=self._run, name="ledger-writer", daemon=False)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the batch in hand (left unacknowledged if the store is away)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._store.close()

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                written = self.run_once(block_ms=500)
                backoff = 0.5
                if 0 < written < self._batch:
                    self._stop.wait(_PACE)
            except Exception as exc:  # a store or Redis outage: wait, retry
                self.store_ok, self.last_error = False, repr(exc)
                log.warning("ledger not written (retrying in %.1f s): %r", backoff, exc)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX)
                with contextlib.suppress(redis.RedisError):
                    self.measure_lag()

    def run_once(self, *, block_ms: int = 0) -> int:
        """Read a batch (if none is in hand), write it, acknowledge it; how many were written.

        Raises:
            Exception: the store or Redis failed; the batch stays in hand for the next call.
        """
        self._purge()
        if not self._held:
            self._held = self._read(block_ms)
        if not self._held:
            self._measure_now()  # an idle writer's gauges still come down to 0
            return 0
        entries = []
        for outbox, stream_id, fields in self._held:
            identity = self._identity(outbox, stream_id)
            try:
                entries.append(from_stream(self._keys.prefix, identity, fields, self._hasher))
            except ValueError as exc:
                log.error("ledger: not an entry, kept in the log: %s %r", exc, fields)  # noqa: TRY400 - no traceback to show
        try:
            self._store.write(entries)
        except Exception:
            self._failures.inc()
            raise
        self._acknowledge(self._held)
        self._held = []
        self._written.inc(len(entries))
        self.store_ok, self.last_error = True, ""
        self._measure_now()
        return len(entries)

    def _measure_now(self) -> None:
        """Measure the one stream's lag, at most once a second (the sweep measures outboxes)."""
        mono = time.monotonic()
        if not self._keys.slot_outboxes and mono - self._measured_at >= _LAG_EVERY:
            self.measure_lag()

    def _purge(self) -> None:
        now = self._clock()
        if now - self._purged_at >= _PURGE_EVERY:
            self._purged_at = now
            gone = self._store.purge(iso(now - self._retention * 86400))
            if gone:
                log.info(
                    "ledger retention: %d entries older than %d days deleted", gone, self._retention
                )

    def _acknowledge(self, held: list[Held]) -> None:
        """Acknowledge and delete what the store now has: one round trip per node."""
        by_outbox: dict[str, list[str]] = {}
        for outbox, stream_id, _ in held:
            by_outbox.setdefault(outbox, []).append(stream_id)
        acks = batch(self._redis)
        for outbox, ids in by_outbox.items():
            acks.execute_command("XACK", outbox, GROUP, *ids)
            acks.execute_command("XDEL", outbox, *ids)
        execute(acks)

    def _identity(self, outbox: str, stream_id: str) -> str:
        """An entry's id in the store: stream ids repeat across outboxes, so a slot's is named."""
        slot = self._slot_of.get(outbox)
        return stream_id if slot is None else f"{slot}/{stream_id}"

    def measure_lag(self) -> tuple[int, float]:
        """Entries waiting in every outbox (written ones are deleted), the oldest's age."""
        self._measure()
        return self.lag_entries, self.lag_seconds

    def _measure(self) -> list[str]:
        """Measure the lag (XLEN of every outbox, a round trip per node); the outboxes not empty."""
        self._measured_at = time.monotonic()
        lengths = batch(self._redis)
        for outbox in self._outboxes:
            lengths.execute_command("XLEN", outbox)
        full = [
            (o, int(n)) for o, n in zip(self._outboxes, execute(lengths), strict=True) if int(n)
        ]
        firsts = batch(self._redis)
        for outbox, _ in full:
            firsts.execute_command("XRANGE", outbox, "-", "+", "COUNT", 1)
        oldest = min(
            (int(text(got[0][0]).split("-")[0]) for got in execute(firsts) if got), default=None
        )
        age = 0.0 if oldest is None else max(0.0, self._clock() - oldest / 1000)
        self.lag_entries, self.lag_seconds = sum(n for _, n in full), age
        self._lag_entries.set(self.lag_entries)
        self._lag_seconds.set(self.lag_seconds)
        return [o for o, _ in full]

    def _read(self, block_ms: int) -> list[Held]:
        """One round trip (per node) of reads over the outboxes worth reading now."""
        mono = time.monotonic()
        if mono - self._swept_at >= _SWEEP_EVERY:  # and the first round
            self._swept_at = mono
            found = dict.fromkeys(self._measure())
            self._claim.update(found)
            self._due.update(found)
        hints = self._keys.hints
        hinted = hints.taken() if hints is not None else {}
        by_key = {self._keys.outbox(slot): (slot, at) for slot, at in hinted.items()}
        wanted = dict.fromkeys([self.key, *self._claim, *self._due, *by_key])
        outboxes = list(wanted)[: max(1, self._batch)]  # the rest: next round
        count = max(1, self._batch // len(outboxes))
        claims = [o for o in outboxes if o in self._claim]
        block = block_ms if outboxes == [self.key] and not claims else 0
        plan, reads = self._queue_reads(outboxes, claims, count, block)
        held, fresh = self._settle(plan, execute(reads, item_errors=True))
        for outbox in claims:
            self._claim.pop(outbox, None)
        if not self._claim:  # every outbox found not empty was read from 0 once
            self._own_pending = False
        for outbox, n in fresh.items():
            if n < count:  # drained; a full read leaves it due
                self._due.pop(outbox, None)
            else:
                self._due[outbox] = None
        for outbox, (slot, at) in by_key.items():
            if (
                hints is not None
                and outbox in fresh
                and (fresh[outbox] or mono - at > _HINT_PATIENCE)
            ):
                hints.forget(slot, at)
        if not held and not block and block_ms:
            self._stop.wait(_IDLE_WAIT)
        return held

    def _queue_reads(
        self, outboxes: list[str], claims: list[str], count: int, block: int
    ) -> tuple[list[tuple[str, str]], Any]:
        """The batch of one round's reads, and what each command is (its kind, its outbox)."""
        reads = batch(self._redis)
        plan: list[tuple[str, str]] = []
        for outbox in outboxes:
            if outbox not in self._grouped:  # from 0: what waited before the group is read too
                reads.execute_command("XGROUP", "CREATE", outbox, GROUP, "0", "MKSTREAM")
                plan.append(("group", outbox))
        for outbox in claims:
            if self._own_pending:  # read by this consumer before a restart, never acknowledged
                reads.execute_command(
                    "XREADGROUP", "GROUP", GROUP, self._consumer, "COUNT", count,
                    "STREAMS", outbox, "0",
                )  # fmt: skip
                plan.append(("own", outbox))
            reads.execute_command(
                "XAUTOCLAIM", outbox, GROUP, self._consumer, _CLAIM_IDLE_MS, "0-0", "COUNT", count
            )
            plan.append(("claim", outbox))
        blocking = ("BLOCK", block) if block else ()
        for outbox in outboxes:
            reads.execute_command(
                "XREADGROUP", "GROUP", GROUP, self._consumer, "COUNT", count, *blocking,
                "STREAMS", outbox, ">",
            )  # fmt: skip
            plan.append(("new", outbox))
        return plan, reads

    def _settle(
        self, plan: list[tuple[str, str]], replies: list[Any]
    ) -> tuple[list[Held], dict[str, int]]:
        """The entries a round read (each once), and how many new ones each outbox gave."""
        held: dict[tuple[str, str], dict[str, Any]] = {}
        fresh: dict[str, int] = {}
        for (what, outbox), reply in zip(plan, replies, strict=True):
            if isinstance(reply, redis.ResponseError):
                if "BUSYGROUP" in str(reply):
                    self._grouped.add(outbox)
                elif "NOGROUP" in str(reply):  # the stream went (a failover, a flush): again
                    self._grouped.discard(outbox)
                else:
                    raise reply
                continue
            if what == "group":
                self._grouped.add(outbox)
                continue
            got = _claimed(reply) if what == "claim" else _messages(reply)
            for stream_id, fields in got:
                held.setdefault((outbox, stream_id), fields)
            if what == "new":
                fresh[outbox] = len(got)
        return [(outbox, sid, fields) for (outbox, sid), fields in held.items()], fresh


def _fields(raw: Any) -> dict[str, Any]:  # noqa: ANN401 - a Redis reply
    if isinstance(raw, list):  # as Redis sends them: name, value, name, value...
        return {text(raw[i]): raw[i + 1] for i in range(0, len(raw) - 1, 2)}
    return {text(k): v for k, v in (raw or {}).items()}


def _messages(reply: Any) -> list[tuple[str, dict[str, Any]]]:  # noqa: ANN401 - a Redis reply
    """The messages of an XREADGROUP reply (of one stream or more), RESP2 or RESP3."""
    out: list[tuple[str, dict[str, Any]]] = []
    if not reply:
        return out
    streams = reply.values() if isinstance(reply, dict) else (s[1] for s in reply)
    for stream in streams:
        # Redis answers [[key, [[id, fields], ...]]] (RESP2) or {key: [[id, fields], ...]}
        # (RESP3); redis-py's own parsing of RESP3 adds a level: {key: [[(id, fields), ...]]}.
        head = stream[0] if stream else None
        nested = isinstance(head, list) and (not head or isinstance(head[0], list | tuple))
        messages = stream[0] if nested else stream
        for message_id, fields in messages:
            if fields:  # an entry deleted meanwhile reads back as (id, None)
                out.append((text(message_id), _fields(fields)))
    return out


def _claimed(reply: Any) -> list[tuple[str, dict[str, Any]]]:  # noqa: ANN401 - a Redis reply
    """The messages an XAUTOCLAIM took over (deleted ones are left out)."""
    return [(text(i), _fields(f)) for i, f in (reply[1] if reply else []) if f]


def open_store(conf: LedgerConfig) -> LedgerStore:
    """The configured store: PostgreSQL when a URL is set, NDJSON files otherwise."""
    if conf.url:
        return PostgresStore(conf.url)
    return FileStore(conf.path, max_bytes=conf.file_max_bytes)


def ledger_writer(
    config: Config,
    client: SyncRedis,
    keys: Keys,
    registry: CollectorRegistry,
    clock: Callable[[], float],
) -> LedgerWriter | None:
    """The service's writer (None when the ledger is off)."""
    conf = config.ledger
    if not conf.enabled:
        return None
    return LedgerWriter(
        client=client,
        keys=keys,
        store=open_store(conf),
        hasher=hasher_for(conf.phone_hash_key, keys.prefix),
        consumer=config.mqtt.client_id,
        batch_size=conf.batch_size,
        retention_days=conf.retention_days,
        registry=registry,
        clock=clock,
    )


def ledger_status(writer: LedgerWriter | None, conf: LedgerConfig) -> dict[str, Any]:
    """What /status and /healthz say of the ledger: lagging once its oldest entry waits too long."""
    if writer is None:
        return {"status": "off"}
    lagging = writer.lag_seconds > conf.lag_alarm_seconds
    return {
        "status": "lagging" if lagging else "ok",
        "store": "postgresql" if conf.url else "ndjson",
        "storeReachable": writer.store_ok,
        "lastError": writer.last_error or None,
        "lagEntries": writer.lag_entries,
        "lagSeconds": round(writer.lag_seconds, 3),
    }


class LedgerReader:
    """The ledger's questions, for the HTTP API: pages of entries, an expired alert's story."""

    def __init__(self, store: LedgerStore, hasher: PhoneHasher) -> None:
        """Keep the store (its own connection, apart from the writer's)."""
        self.store, self.hasher = store, hasher

    def query(self, q: LedgerQuery) -> list[dict[str, Any]]:
        """One page of entries."""
        return self.store.query(q)

    def alert(self, key: str) -> dict[str, Any] | None:
        """What the ledger proves of an alert whose record expired (None: nothing).

        The decision and every attempt and task of the key's latest alert (a key may be
        reused once its record expired), shaped like the record GET /v1/alerts/{key} serves.
        """
        entries = self.store.query(LedgerQuery(idempotency_key=key, limit=MAX_PAGE))
        if not entries:
            return None
        accepted = [str(e["evidence"].get("acceptedAt") or "") for e in entries]
        latest = max(accepted)
        mine = [e for e, a in zip(entries, accepted, strict=True) if a == latest]
        decision = next((e for e in mine if e["kind"] == "decision"), mine[0])
        evidence = decision["evidence"]
        doc: dict[str, Any] = {
            "idempotencyKey": key,
            "source": "ledger",
            **{
                name: decision.get(name)
                for name in ("sensorId", "customerId", "alertType", "priority", "referenceId")
            },
            "acceptedAt": evidence.get("acceptedAt"),
            "state": decision.get("outcome") or decision.get("event"),
            "outcome": decision.get("outcome"),
            "reason": decision.get("reason"),
            "detail": decision.get("detail"),
            "callId": next((e["callId"] for e in mine if e.get("callId")), None),
            "taskId": next((e["taskId"] for e in mine if e.get("taskId")), None),
            "facts": evidence.get("facts"),
            "history": [e["evidence"].get("history") for e in mine if e["evidence"].get("history")],
            "ledger": mine,
        }
        return {k: v for k, v in doc.items() if v is not None}

    def close(self) -> None:
        """Close the store."""
        self.store.close()


def ledger_reader(config: Config) -> LedgerReader | None:
    """The service's reader (None when the ledger is off)."""
    conf = config.ledger
    if not conf.enabled:
        return None
    return LedgerReader(open_store(conf), hasher_for(conf.phone_hash_key, config.redis.key_prefix))
