"""The shipped Prometheus alerting rules are valid, behave as their unit tests say, and ask only
for metrics, labels and label values that tripline really exposes."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ServiceHandle, http
from tripline.messages import Outcome, Priority, Reason

RULES = Path(__file__).parent.parent.parent / "deploy" / "prometheus"

# `up` is Prometheus' own series for a scrape target, not one of tripline's.
_NOT_OURS = {"up"}
_SELECTOR = re.compile(r"\b(tripline_[a-z_]+)\b(?:\{([^}]*)\})?")
_MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"')


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.fail(
            "promtool is missing: scripts/test installs it (Debian's prometheus package); "
            "here: apt-get install --no-install-recommends prometheus"
        )
    return subprocess.run(
        [tool, *args], cwd=RULES, capture_output=True, text=True, check=False, timeout=60
    )


def test_the_rules_are_valid_prometheus_rules() -> None:
    result = promtool("check", "rules", "tripline-alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_compose_prometheus_scrapes_tripline_and_loads_the_rules() -> None:
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load((RULES / "prometheus.yml").read_text())
    compose = yaml.safe_load((RULES.parent / "docker-compose.yml").read_text())["services"]
    mounted = dict(v.split(":")[:2] for v in compose["prometheus"]["volumes"])
    for rule_file in config["rule_files"]:
        assert mounted[f"./prometheus/{rule_file}"] == f"/etc/prometheus/{rule_file}"
    (job,) = config["scrape_configs"]
    port = compose["tripline"]["ports"][0].rsplit(":", 1)[1]
    assert job["static_configs"][0]["targets"] == [f"tripline:{port}"]
    rules = yaml.safe_load((RULES / "tripline-alerts.yml").read_text())["groups"][0]["rules"]
    down = next(r for r in rules if r["alert"] == "TriplineDown")
    assert f'job="{job["job_name"]}"' in down["expr"]


def test_the_rules_fire_as_their_unit_tests_say() -> None:
    result = promtool("test", "rules", "tripline-alerts.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def selectors(expr: str) -> list[tuple[str, dict[str, str]]]:
    """The tripline metrics an expression selects, each with its equality matchers."""
    found = []
    for name, body in _SELECTOR.findall(expr):
        matchers = {label: value for label, op, value in _MATCHER.findall(body) if op == "="}
        found.append((name, matchers))
    return found


def test_selectors_are_read_from_an_expression() -> None:
    expr = 'sum by (instance) (rate(tripline_alerts_total{outcome="rejected"}[5m])) > 0.1'
    assert selectors(expr) == [("tripline_alerts_total", {"outcome": "rejected"})]
    assert selectors("tripline_fleet_incident == 1 and up == 0") == [
        ("tripline_fleet_incident", {})
    ]


@pytest.mark.integration
def test_every_metric_and_label_the_rules_ask_for_is_exposed(service: ServiceHandle) -> None:
    status, text = http("GET", f"{service.url}/metrics")
    assert status == 200
    exposed: dict[str, set[str]] = {}  # sample name -> label names
    values: dict[tuple[str, str], set[str]] = {}  # (sample name, label) -> values seen
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            exposed.setdefault(sample.name, set()).update(sample.labels)
            for label, value in sample.labels.items():
                values.setdefault((sample.name, label), set()).add(value)
    # Counters show a label value only once it happened: their vocabulary is the project's.
    vocabulary = {
        "outcome": {o.value for o in Outcome},
        "reason": {r.value for r in Reason},
        "priority": {p.label for p in Priority},
    }
    rules = yaml.safe_load((RULES / "tripline-alerts.yml").read_text())
    checked = 0
    for group in rules["groups"]:
        for rule in group["rules"]:
            for name, matchers in selectors(rule["expr"]):
                assert name in exposed, f"{rule['alert']}: {name} is not on /metrics"
                for label, value in matchers.items():
                    assert label in exposed[name], f"{rule['alert']}: {name} has no {label}"
                    known = vocabulary.get(label) or values[(name, label)]
                    assert value in known, f"{rule['alert']}: {name}{{{label}={value!r}}}"
                checked += 1
            names = {n for n, _ in selectors(rule["expr"])}
            bare = set(re.findall(r"\b([a-z_]+)\{", rule["expr"])) - names - _NOT_OURS
            assert not bare, f"{rule['alert']}: selects {bare}, not tripline's"
    assert checked >= len(rules["groups"][0]["rules"]) - 1  # every rule but TriplineDown
