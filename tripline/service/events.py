"""Service events (flap episodes, fleet incidents): logged, kept for /status, published on MQTT.

Events are facts for operators and integrations (`tripline/events`), not alert outcomes: the
outcome of every alert is still on its record.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import orjson

from tripline.adapters.store import iso

log = logging.getLogger("tripline.events")

_KEEP = 200


class Events:
    """Thread-safe: shards and the dialer emit from their own threads."""

    def __init__(self, instance: str, clock: Callable[[], float] = time.time) -> None:
        """Nothing is published until a publisher is set (the MQTT subscriber, once started)."""
        self._instance, self._clock = instance, clock
        self._recent: deque[dict[str, Any]] = deque(maxlen=_KEEP)
        self._lock = threading.Lock()
        self._publish: Callable[[bytes], None] | None = None

    def publish_with(self, publish: Callable[[bytes], None]) -> None:
        """Where events go on the wire."""
        self._publish = publish

    def emit(self, kind: str, **fields: Any) -> dict[str, Any]:  # noqa: ANN401
        """Record one event and publish it; a failed publish is logged, never raised."""
        doc = {"type": kind, "at": iso(self._clock()), "instance": self._instance, **fields}
        with self._lock:
            self._recent.append(doc)
        log.warning("event %s", kind, extra={"event": doc})
        if self._publish is not None:
            try:
                self._publish(orjson.dumps(doc))
            except Exception:
                log.warning("event %s not published", kind, exc_info=True)
        return doc

    def recent(self, limit: int = 50) -> list[dict[str, Any]]:
        """The newest events first."""
        with self._lock:
            return list(reversed(self._recent))[:limit]
