"""Counters by outcome and reason, shared by every actor, served on /status and /metrics."""

from __future__ import annotations

import threading
from collections import Counter

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client import Counter as PromCounter

from messages import Reason


class Stats:
    """Thread-safe outcome counters; one instance per service (tests run several)."""

    def __init__(self) -> None:
        """Create the counters in a registry of their own."""
        self.registry = CollectorRegistry()
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str]] = Counter()
        self._prom = PromCounter(
            "tripline_alerts",
            "Alerts by outcome and reason",
            ["outcome", "reason"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "tripline_dialer_queue_depth",
            "Dial work waiting, by priority",
            ["priority"],
            registry=self.registry,
        )

    def count(self, outcome: str, reason: Reason = Reason.NONE, n: int = 1) -> None:
        """Count `n` alerts reaching `outcome` for `reason`."""
        outcome = str(outcome)  # a StrEnum member would leak into JSON keys as a non-str
        with self._lock:
            self._counts[(outcome, reason.value)] += n
        self._prom.labels(outcome, reason.value).inc(n)

    def snapshot(self) -> dict[str, dict[str, int]]:
        """{outcome: {reason or '-': count}} for the status JSON."""
        out: dict[str, dict[str, int]] = {}
        with self._lock:
            for (outcome, reason), n in sorted(self._counts.items()):
                out.setdefault(outcome, {})[reason or "-"] = n
        return out

    def total(self, outcome: str) -> int:
        """How many alerts reached `outcome`, all reasons."""
        with self._lock:
            return sum(n for (o, _), n in self._counts.items() if o == outcome)
