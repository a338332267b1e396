"""The metrics a fresh process exposes."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tripline.messages import OUTCOME_REASONS, Outcome, Reason
from tripline.service.stats import Stats


def alert_counts(stats: Stats) -> dict[tuple[str, str], float]:
    text = generate_latest(stats.registry).decode()
    return {
        (s.labels["outcome"], s.labels["reason"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "tripline_alerts_total"
    }


def test_every_outcome_and_reason_is_exposed_at_zero_before_it_happens() -> None:
    """increase() and rate() need a sample before the first event to see that event."""
    expected = {
        (outcome.value, reason.value): 0.0
        for outcome, reasons in OUTCOME_REASONS.items()
        for reason in reasons
    }
    assert alert_counts(Stats()) == expected


def test_counting_moves_only_its_own_series_and_status_counts_only_what_happened() -> None:
    stats = Stats()
    stats.count(Outcome.DEFERRED, Reason.DIAL_UNCERTAIN)
    stats.count(Outcome.CALLED, n=3)
    counts = alert_counts(stats)
    assert counts[("deferred", "dial_uncertain")] == 1.0
    assert counts[("called", "")] == 3.0
    assert sum(counts.values()) == 4.0
    assert stats.total("called") == 3
    assert stats.total("suppressed") == 0
