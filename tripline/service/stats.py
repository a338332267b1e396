"""Counters by outcome and reason, shared by every actor, served on /status and /metrics.

Every decision also goes to the log (logger `tripline.decision`, one event with its reason) and
to a short in-memory list the dashboard shows.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, Histogram
from prometheus_client import Counter as PromCounter

from tripline.messages import OUTCOME_REASONS, Alert, Reason

decision_log = logging.getLogger("tripline.decision")

_STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_DECISION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)


class Stats:
    """Thread-safe outcome counters; one instance per service (tests run several)."""

    def __init__(self) -> None:
        """Create the counters in a registry of their own."""
        self.registry = CollectorRegistry()
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str]] = Counter()
        # prometheus_client's labels() validates and locks on every call (~12 µs per counted
        # alert in a profile): each series' child is looked up once and kept, per metric, here.
        self._children: dict[object, dict[tuple[str, ...], Any]] = {}
        self._prom = PromCounter(
            "tripline_alerts",
            "Alerts by outcome and reason",
            ["outcome", "reason"],
            registry=self.registry,
        )
        # Every series exists from the start, at 0: a rule such as increase(…[15m]) > 0 needs a
        # sample before the first event, or the first dial_uncertain of a process goes unseen.
        for outcome, reasons in OUTCOME_REASONS.items():
            for reason in reasons:
                self._prom.labels(outcome.value, reason.value)
        self.queue_depth = Gauge(
            "tripline_dialer_queue_depth",
            "Dial work waiting, by priority",
            ["priority"],
            registry=self.registry,
        )
        self.stage_seconds = Histogram(
            "tripline_stage_seconds",
            "Time one batch (or one contact-center request) spends in a stage",
            ["stage"],
            buckets=_STAGE_BUCKETS,
            registry=self.registry,
        )
        self.decision_seconds = Histogram(
            "tripline_decision_seconds",
            "From accepting an alert to its outcome",
            ["outcome"],
            buckets=_DECISION_BUCKETS,
            registry=self.registry,
        )
        self.takeovers = PromCounter(
            "tripline_takeovers",
            "Lapsed instances this instance adopted (their sessions, queues and alerts)",
            registry=self.registry,
        )
        self.handoff_out = PromCounter(
            "tripline_webhook_handoff_out",
            "Accepted webhook alerts this instance's busy door handed to an idle one",
            registry=self.registry,
        )
        self.handoff_in = PromCounter(
            "tripline_webhook_handoff_in",
            "Handed-off webhook alerts this instance took and decided",
            registry=self.registry,
        )
        self._results = PromCounter(
            "tripline_call_results",
            "Placed calls by what became of them (reason: no_answer, busy, ..., or a wrap-up code)",
            ["result", "reason"],
            registry=self.registry,
        )
        self.attempts_per_alert = Histogram(
            "tripline_call_attempts_per_alert",
            "Calls placed for one alert when its re-attempt ladder ended",
            buckets=(1, 2, 3, 4, 5, 6, 8, 10, 20),
            registry=self.registry,
        )
        self.time_to_reach = Histogram(
            "tripline_time_to_reach_seconds",
            "From accepting an alert to learning a person was reached",
            buckets=(10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 86400),
            registry=self.registry,
        )
        self._result_counts: Counter[str] = Counter()
        self.gauges = {
            name: Gauge(f"tripline_{name}", doc, labels, registry=self.registry)
            for name, doc, labels in (
                ("up", "1 when the component is reachable (redis, broker)", ["component"]),
                ("actor_up", "1 when the actor runs", ["actor"]),
                ("actor_restarts", "Restarts of the actor since start", ["actor"]),
                ("breaker_open", "1 when the breaker is open (backend, crm)", ["breaker"]),
                ("queue_occupancy", "Last observed contact-center queue occupancy (0-1)", []),
                ("rate_budget_per_minute", "The shared contact-center rate budget", []),
                ("rate_budget_taken", "Budget this instance has taken since start", []),
                ("dialing_paused", "1 while an operator (or a 429) pauses dialing", ["by"]),
                ("fleet_incident", "1 while a fleet incident is open", []),
                ("sensor_entities", "Sensor entities held in memory", []),
                ("maintenance_windows_open", "Maintenance windows open now", []),
                ("leases", "Instances in the lease registry, by state (live, lapsed)", ["state"]),
            )
        }
        self._recent: deque[dict[str, Any]] = deque(maxlen=200)

    def count(self, outcome: str, reason: Reason = Reason.NONE, n: int = 1) -> None:
        """Count `n` alerts reaching `outcome` for `reason`."""
        # str(): a StrEnum member would leak into JSON keys as a non-str; str() of a StrEnum is
        # its value, in C (`.value` is a Python-level property, on every counted alert).
        key = (str(outcome), str(reason))
        with self._lock:
            self._counts[key] += n
        self._child(self._prom, key).inc(n)

    def stage(self, stage: str) -> Any:  # noqa: ANN401 - prometheus_client's untyped child
        """The `tripline_stage_seconds` histogram of one stage (its child, looked up once)."""
        return self._child(self.stage_seconds, (stage,))

    def _child(self, metric: Any, labels: tuple[str, ...]) -> Any:  # noqa: ANN401
        """`metric.labels(*labels)`, kept: the same child prometheus_client would return.

        Unlocked: two threads may both look a new series up, and get the same child.
        """
        children = self._children.get(metric)
        if children is None:
            children = self._children.setdefault(metric, {})
        child = children.get(labels)
        if child is None:
            child = children[labels] = metric.labels(*labels)
        return child

    def call_result(self, result: str, reason: str) -> None:
        """Count one placed call's result (reasons beyond the vocabulary: wrap-up codes)."""
        # A wrap-up code is the contact center's own text: bounded, so a tenant with many
        # codes cannot blow up the series count.
        label = reason if len(reason) <= 64 else reason[:64]
        self._child(self._results, (result, label)).inc()
        with self._lock:
            self._result_counts[result] += 1

    def reach(self) -> dict[str, Any]:
        """Results so far and the reach rate (reached / calls with a final result)."""
        with self._lock:
            counts = dict(self._result_counts)
        final = sum(n for r, n in counts.items() if r != "pending")
        rate = round(counts.get("reached", 0) / final, 3) if final else None
        return {"results": counts, "reachRate": rate}

    def decided(
        self,
        alert: Alert,
        outcome: str,
        reason: Reason = Reason.NONE,
        *,
        now: float | None = None,
        **fields: str,
    ) -> None:
        """Count one alert's outcome, log the decision, and keep it for the dashboard."""
        self.count(outcome, reason)
        now = time.time() if now is None else now
        self._child(self.decision_seconds, (str(outcome),)).observe(
            max(0.0, now - alert.accepted_at)
        )
        self._remember(
            {
                "idempotencyKey": alert.idempotency_key,
                "sensorId": alert.sensor_id,
                "customerId": alert.customer_id,
                "alertType": alert.alert_type,
                "priority": alert.priority.label,
                "outcome": str(outcome),
                "reason": reason.value or None,
                "at": round(now, 3),
                **{k: v for k, v in fields.items() if v},
            }
        )

    def refused(self, outcome: str, reason: Reason, *, key: str = "", detail: str = "") -> None:
        """Count and log a duplicate or a rejection (no accepted alert behind it)."""
        self.count(outcome, reason)
        self._remember(
            {
                "idempotencyKey": key or None,
                "outcome": str(outcome),
                "reason": reason.value,
                "at": round(time.time(), 3),
                "detail": detail or None,
            }
        )

    def _remember(self, event: dict[str, Any]) -> None:
        """Keep a decision for the dashboard and log it: one event per decision."""
        with self._lock:
            self._recent.append(event)
        reason = event["reason"]
        decision_log.info(
            "%s %s%s",
            event["idempotencyKey"] or "-",
            event["outcome"],
            f"/{reason}" if reason else "",
            extra={"decision": event},
        )

    def recent(self, limit: int = 50) -> list[dict[str, Any]]:
        """The newest decisions first."""
        with self._lock:
            return list(reversed(self._recent))[:limit]

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
