"""The dead-letter: poison kept for a person, never handled again.

A message or record that failed again and again (or that our own code could not process) is
acknowledged and written here as it was received — a capped Redis stream per deployment — so
a restart never meets it twice and an operator can still see exactly what came in
(`tripline deadletter`, GET /v1/admin/deadletter, or `XRANGE <prefix>:{dlq}:deadletter - +`).
Writing it is best effort: with Redis away the entry goes to the log instead, and the
message is still acknowledged (keeping it would stop everything behind it).
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import redis
from prometheus_client import CollectorRegistry
from prometheus_client import Counter as PromCounter

from tripline.adapters.redis_clients import SyncRedis
from tripline.adapters.store import Keys, iso, text

log = logging.getLogger("tripline.deadletter")

SOURCES = ("mqtt", "http", "shard", "resume")
"""Where poison is met: a door, a shard deciding an alert, the resume sweep re-routing one."""
_PAYLOAD_MAX = 65536 + 1024


def encode_payload(payload: bytes) -> tuple[str, str]:
    """The payload as stored: UTF-8 text when it is, base64 otherwise; (encoding, text)."""
    try:
        return "utf-8", payload.decode("utf-8")
    except UnicodeDecodeError:
        return "base64", base64.b64encode(payload).decode("ascii")


class DeadLetters:
    """Writes quarantined messages to the capped stream and counts them."""

    def __init__(
        self,
        *,
        client: SyncRedis,
        keys: Keys,
        max_entries: int,
        registry: CollectorRegistry,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Keep the collaborators; thread-safe (every door and shard writes here)."""
        self._redis, self._max, self._clock = client, max_entries, clock
        self.key = keys.dead_letters()
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._prom = PromCounter(
            "tripline_dead_letters",
            "Messages and records quarantined in the dead-letter, by where they were met",
            ["source"],
            registry=registry,
        )
        for source in SOURCES:
            self._prom.labels(source)

    def add(
        self,
        source: str,
        *,
        error: str,
        payload: bytes = b"",
        key: str = "",
        topic: str = "",
        attempts: int = 1,
    ) -> None:
        """Keep one poison message (or record): what came in, where, and what went wrong."""
        encoding, body = encode_payload(payload[:_PAYLOAD_MAX])
        entry: dict[str, Any] = {
            "at": iso(self._clock()),
            "source": source,
            "error": error[:1000],
            "attempts": attempts,
            "idempotencyKey": key,
            "topic": topic,
            "encoding": encoding,
            "payload": body,
            "truncated": int(len(payload) > _PAYLOAD_MAX),
        }
        with self._lock:
            self._counts[source] += 1
        self._prom.labels(source).inc()
        log.error(
            "quarantined a %s message (key %r, %d attempt(s)): %s",
            source,
            key,
            attempts,
            error[:300],
        )
        try:
            self._redis.xadd(self.key, entry, maxlen=self._max, approximate=True)  # type: ignore[arg-type]
        except redis.RedisError as exc:
            log.error("dead-letter not written (%s): %s", exc, entry)  # noqa: TRY400 - expected

    def counts(self) -> dict[str, int]:
        """Quarantined by this process since start, by source."""
        with self._lock:
            return dict(self._counts)

    def recent(self, count: int = 20) -> list[dict[str, str]]:
        """The newest entries of the stream (every instance's), newest first."""
        entries: list[tuple[bytes, dict[bytes, bytes]]] = self._redis.xrevrange(  # type: ignore[assignment]
            self.key, count=count
        )
        return [
            {"id": text(entry_id), **{text(k): text(v) for k, v in fields.items()}}
            for entry_id, fields in entries
        ]
