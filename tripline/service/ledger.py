"""The ledger writer: moves entries from the Redis stream into the ledger's store.

Record scripts append an entry to `<prefix>:{ledger}:entries` in the same atomic step as the
change it proves (tripline/adapters/store.py LEDGER_APPEND); operator actions append theirs
with the action. Nothing on the path of an alert waits for the store: entries wait in Redis
until the store has them. Every instance runs a writer in one consumer group: an entry is
written by one of them, acknowledged and deleted only once its batch is durable in the store
(a replay after a crash inserts nothing: the store keys entries by stream id), and the
entries an instance read but never acknowledged (it died) are claimed by another after
`_CLAIM_IDLE_MS`.
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
from tripline.adapters.store import Keys, iso, text
from tripline.conf.schema import Config, LedgerConfig

log = logging.getLogger("tripline.ledger")

GROUP = "ledger"
_CLAIM_IDLE_MS = 60_000
"""An entry read but not acknowledged for this long belongs to a dead writer: claimed."""
_PURGE_EVERY = 3600.0
_BACKOFF_MAX = 10.0


class LedgerWriter:
    """One instance's consumer of the ledger stream; a thread of its own."""

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
        self._consumer, self._batch, self._retention = consumer, batch_size, retention_days
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._held: list[tuple[str, dict[str, Any]]] = []  # read, not yet in the store
        self._own_pending = True  # after a restart: what this consumer read before, first
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
            "Entries waiting in Redis for the ledger",
            registry=registry,
        )
        self._lag_seconds = Gauge(
            "tripline_ledger_lag_seconds",
            "Age of the oldest entry waiting in Redis for the ledger",
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
                self.run_once(block_ms=500)
                backoff = 0.5
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
        now = self._clock()
        if now - self._purged_at >= _PURGE_EVERY:
            self._purged_at = now
            gone = self._store.purge(iso(now - self._retention * 86400))
            if gone:
                log.info(
                    "ledger retention: %d entries older than %d days deleted", gone, self._retention
                )
        if not self._held:
            self._held = self._read(block_ms)
        if not self._held:
            self.measure_lag()
            return 0
        entries = []
        for stream_id, fields in self._held:
            try:
                entries.append(from_stream(self._keys.prefix, stream_id, fields, self._hasher))
            except ValueError as exc:
                log.error("ledger: not an entry, kept in the log: %s %r", exc, fields)  # noqa: TRY400 - no traceback to show
        self._store.write(entries)
        ids = [stream_id for stream_id, _ in self._held]
        pipe = self._redis.pipeline(transaction=False)
        pipe.xack(self.key, GROUP, *ids)
        pipe.xdel(self.key, *ids)
        pipe.execute()
        self._held = []
        self._written.inc(len(entries))
        self.store_ok, self.last_error = True, ""
        self.measure_lag()
        return len(entries)

    def measure_lag(self) -> tuple[int, float]:
        """Entries waiting (the stream's length: written ones are deleted), the oldest's age."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.xlen(self.key)
        pipe.xrange(self.key, "-", "+", count=1)
        length, first = pipe.execute()
        age = 0.0
        if first:
            ms = int(text(first[0][0]).split("-")[0])
            age = max(0.0, self._clock() - ms / 1000)
        self.lag_entries, self.lag_seconds = int(length), age
        self._lag_entries.set(self.lag_entries)
        self._lag_seconds.set(self.lag_seconds)
        return self.lag_entries, self.lag_seconds

    def _read(self, block_ms: int) -> list[tuple[str, dict[str, Any]]]:
        self._ensure_group()
        if self._own_pending:  # read by this consumer before a restart, never acknowledged
            got = self._redis.xreadgroup(GROUP, self._consumer, {self.key: "0"}, count=self._batch)
            batch = _messages(got)
            if batch:
                return batch
            self._own_pending = False
        claimed = self._redis.xautoclaim(
            self.key, GROUP, self._consumer, _CLAIM_IDLE_MS, "0-0", count=self._batch
        )
        if batch := [(text(i), _fields(f)) for i, f in claimed[1] if f]:
            return batch
        got = self._redis.xreadgroup(
            GROUP, self._consumer, {self.key: ">"}, count=self._batch, block=block_ms or None
        )
        return _messages(got)

    def _ensure_group(self) -> None:
        try:
            self._redis.xgroup_create(self.key, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise


def _fields(raw: Any) -> dict[str, Any]:  # noqa: ANN401 - a Redis reply
    return {text(k): v for k, v in (raw or {}).items()}


def _messages(reply: Any) -> list[tuple[str, dict[str, Any]]]:  # noqa: ANN401 - a Redis reply
    out: list[tuple[str, dict[str, Any]]] = []
    if not reply:
        return out
    streams = reply.values() if isinstance(reply, dict) else (s[1] for s in reply)
    for stream in streams:
        # RESP3 answers {key: [[(id, fields), ...]]}, RESP2 [[key, [(id, fields), ...]]].
        messages = stream[0] if stream and isinstance(stream[0], list) else stream
        for message_id, fields in messages:
            if fields:  # an entry deleted meanwhile reads back as (id, None)
                out.append((text(message_id), _fields(fields)))
    return out


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
