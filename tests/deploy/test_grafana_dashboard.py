"""The shipped Grafana dashboard is one Grafana accepts, is provisioned beside Prometheus, and
asks only for metrics, labels and label values that a running tripline exposes."""

from __future__ import annotations

import copy
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import EmulatorHandle, ServiceHandle, alert, http, wait_for
from tests.deploy.dashboard_checks import (
    DEPLOY,
    GRAFANA,
    Exposition,
    Grouping,
    Selector,
    load,
    panels,
    queries,
    read,
)
from tests.deploy.grafana_schema import schema_problems
from tripline.edge.siblings import merge_metrics
from tripline.messages import Outcome, Priority, Reason
from tripline.pipeline.reach import CallResult, ResultReason

DOCS = DEPLOY.parent / "docs" / "operations.md"


def compose() -> dict[str, Any]:
    services: dict[str, Any] = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())[
        "services"
    ]
    return services


def test_the_dashboard_is_valid_against_grafana_s_schema() -> None:
    assert schema_problems(load()) == []


def _retype(doc: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split("/")
    node: Any = doc
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    node[last] = value


@pytest.mark.parametrize(
    ("path", "value", "reported"),
    [
        pytest.param("panels/1/gridpos", {}, ".panels[1].gridpos: not in the schema", id="typo"),
        pytest.param("panels/1/gridPos/w", "4", ".panels[1].grid_pos.w: '4'", id="width-a-string"),
        pytest.param("graphTooltip", 7, ".graph_tooltip: 7", id="tooltip-mode-unknown"),
        pytest.param("panels/1/options/colorMode", "purple", "color_mode", id="option-value"),
        pytest.param("panels/1/type", "gauges", "type 'gauges'", id="panel-type-unknown"),
        pytest.param("panels/1/targets/0/legendFormt", "x", "legendFormt", id="target-typo"),
    ],
)
def test_the_schema_check_reports_what_grafana_would_not_accept(
    path: str, value: Any, reported: str
) -> None:
    doc = copy.deepcopy(load())
    _retype(doc, path, value)
    problems = schema_problems(doc)
    assert any(reported in p for p in problems), problems


def test_panels_have_unique_ids_and_do_not_overlap() -> None:
    doc = load()
    every = list(panels(doc))
    ids = [p["id"] for p in every]
    assert len(ids) == len(set(ids)), ids
    taken: dict[tuple[int, int], int] = {}
    for panel in every:
        grid = panel["gridPos"]
        assert all(isinstance(grid[k], int) and grid[k] >= 0 for k in "xywh"), panel["title"]
        assert grid["w"] > 0, panel["title"]
        assert grid["h"] > 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in taken, f"{panel['title']} overlaps panel {taken[(x, y)]}"
                taken[(x, y)] = panel["id"]
        if panel["type"] == "row":
            assert (grid["w"], grid["h"]) == (24, 1)
            continue
        assert panel["title"], panel["id"]
        assert panel["description"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert refs, panel["title"]
        assert len(refs) == len(set(refs)), panel["title"]


def test_every_query_uses_the_provisioned_prometheus() -> None:
    doc = load()
    (source,) = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())[
        "datasources"
    ]
    assert source["type"] == "prometheus"
    assert source["isDefault"] is True
    # Its URL is the compose Prometheus, at the port the container listens on.
    port = compose()["prometheus"]["ports"][0].rsplit(":", 1)[1]
    assert source["url"] == f"http://prometheus:{port}"
    scrape = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())["global"]
    assert source["jsonData"]["timeInterval"] == scrape["scrape_interval"]
    (variable,) = [v for v in doc["templating"]["list"] if v["name"] == "datasource"]
    assert (variable["type"], variable["query"]) == ("datasource", "prometheus")
    assert variable["current"]["value"] == source["uid"]
    refs = _datasources(doc)
    builtin = {"type": "grafana", "uid": "-- Grafana --"}  # annotations: Grafana's own
    assert len(refs) > len(list(panels(doc)))
    assert {str(r) for r in refs if r != builtin} == {
        str({"type": "prometheus", "uid": "${datasource}"})
    }
    for panel in panels(doc):
        if panel["type"] != "row":
            assert all(t["datasource"] == panel["datasource"] for t in panel["targets"])


def _datasources(node: Any) -> list[Any]:
    if isinstance(node, dict):
        own = [node["datasource"]] if "datasource" in node else []
        return own + [r for v in node.values() for r in _datasources(v)]
    if isinstance(node, list):
        return [r for v in node for r in _datasources(v)]
    return []


def test_compose_provisions_grafana_with_the_dashboard() -> None:
    grafana = compose()["grafana"]
    assert grafana["image"].startswith("grafana/grafana-oss:")
    assert grafana["ports"] == ["127.0.0.1:3000:3000"]
    assert "prometheus" in grafana["depends_on"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"])
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    (provider,) = yaml.safe_load((GRAFANA / "provisioning/dashboards/tripline.yml").read_text())[
        "providers"
    ]
    assert mounts["./grafana/dashboards"] == provider["options"]["path"]
    env = grafana["environment"]
    home = Path(env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"])
    assert str(home.parent) == provider["options"]["path"]
    assert (GRAFANA / "dashboards" / home.name).is_file()
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    assert env["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD")


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    """Prometheus' own parser (promtool) reads each query, as a recording rule."""
    rules = [
        {"record": f"dashboard:query_{n}", "expr": expr}
        for n, (_, expr, _) in enumerate(queries(load()))
    ]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    tool = shutil.which("promtool")
    if tool is None:
        pytest.fail("promtool is missing: scripts/test installs it (Debian's prometheus package)")
    result = subprocess.run(
        [tool, "check", "rules", str(path)], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


@pytest.mark.parametrize(
    ("expr", "selectors", "groupings"),
    [
        pytest.param(
            'sum by (reason) (rate(tripline_alerts_total{outcome="deferred"}[1m]))',
            [Selector("tripline_alerts_total", (("outcome", "=", "deferred"),))],
            [Grouping(("reason",), frozenset({"tripline_alerts_total"}))],
            id="aggregation",
        ),
        pytest.param(
            "histogram_quantile(0.9, sum by (le, worker) (rate(a_bucket[1m]))) / on (instance)"
            " group_left (x) b",
            [Selector("a_bucket", ()), Selector("b", ())],
            [
                Grouping(("instance",), frozenset({"a_bucket", "b"})),
                Grouping(("x",), frozenset({"a_bucket", "b"})),
                Grouping(("le", "worker"), frozenset({"a_bucket"})),
            ],
            id="histogram-and-vector-matching",
        ),
        pytest.param(
            'max without (a) (c{r!="p", s=~"x|y"})',
            [Selector("c", (("r", "!=", "p"), ("s", "=~", "x|y")))],
            [Grouping(("a",), frozenset({"c"}))],
            id="without-and-other-matchers",
        ),
    ],
)
def test_queries_are_read_by_a_promql_parser(
    expr: str, selectors: list[Selector], groupings: list[Grouping]
) -> None:
    query = read(expr)
    assert list(query.selectors) == selectors
    assert sorted(query.groupings, key=str) == sorted(groupings, key=str)


def test_the_operations_guide_describes_every_row() -> None:
    section = DOCS.read_text().split("## The Grafana dashboard", 1)[1].split("\n## ", 1)[0]
    for panel in panels(load()):
        if panel["type"] == "row":
            assert f"**{panel['title']}**" in section, panel["title"]


# --- against a running service ------------------------------------------------------------------

# Counters show a label value only once it happened: their vocabulary is the project's.
VOCABULARY = {
    ("tripline_alerts_total", "outcome"): {o.value for o in Outcome},
    ("tripline_alerts_total", "reason"): {r.value for r in Reason},
    ("tripline_call_results_total", "result"): {r.value for r in CallResult},
    ("tripline_call_results_total", "reason"): {r.value for r in ResultReason} | {""},
    ("tripline_dialer_queue_depth", "priority"): {p.label for p in Priority},
}
SAMPLE = """\
# TYPE tripline_alerts counter
tripline_alerts_total{outcome="called",reason=""} 1.0
# TYPE tripline_decision_seconds histogram
tripline_decision_seconds_bucket{outcome="called",le="1.0"} 1.0
tripline_decision_seconds_bucket{outcome="called",le="+Inf"} 1.0
tripline_decision_seconds_count{outcome="called"} 1.0
tripline_decision_seconds_sum{outcome="called"} 0.1
# TYPE tripline_breaker_open gauge
tripline_breaker_open{breaker="crm"} 0.0
"""


@pytest.mark.parametrize(
    ("expr", "legend", "problem"),
    [
        pytest.param(
            'sum by (reason) (rate(tripline_alerts_total{job="tripline", instance=~".*", '
            'outcome=~"called|deferred"}[1m]))',
            "{{reason}}",
            None,
            id="all-offered",
        ),
        pytest.param("sum(tripline_alert_total)", "", "tripline_alert_total is not", id="name"),
        pytest.param("sum(tripline_alerts_totals)", "", "is not on /metrics", id="suffix"),
        pytest.param(
            'tripline_alerts_total{outcom="called"}', "", "has no label outcom", id="label"
        ),
        pytest.param(
            'tripline_alerts_total{outcome=~"called|calld"}', "", "'calld'", id="regex-value"
        ),
        pytest.param('tripline_breaker_open{breaker="db"}', "", "'db'", id="value-seen"),
        pytest.param('up{job="other"}', "", "up{job='other'}", id="job-name"),
        pytest.param(
            'tripline_decision_seconds_bucket{le="1"}', "", "le='1'", id="bucket-bound-as-exposed"
        ),
        pytest.param(
            "sum by (stage) (tripline_decision_seconds_count)", "", "['stage']", id="grouping"
        ),
        pytest.param(
            "sum by (outcome) (tripline_alerts_total)", "{{reason}}", "legend", id="legend"
        ),
    ],
)
def test_a_query_is_checked_against_an_exposition(
    expr: str, legend: str, problem: str | None
) -> None:
    exposition = Exposition.of(SAMPLE, job="tripline", vocabulary=VOCABULARY)
    found = exposition.problems("q", expr, legend)
    if problem is None:
        assert found == []
    else:
        assert any(problem in p for p in found), found


@pytest.mark.integration
def test_every_metric_and_label_the_dashboard_asks_for_is_exposed(
    make_service: Callable[..., ServiceHandle], emulator: EmulatorHandle
) -> None:
    # One call followed to its result: the results' series exist from then on.
    http("PUT", f"{emulator.url}/_emulator/settings", {"call_result_delay_seconds": 0.3})
    service = make_service(TRIPLINE__OUTCOMES__POLL_SECONDS="0.2").start()
    # A customer where it is daytime now: the emulator's own CUST-9981 lives in Sao Paulo, and
    # from 23:00 to 11:00 UTC its call was a deferred task (CI went red at 07:45 UTC).
    emulator.add_customer("CUST-9981")
    doc = alert()
    service.publish(doc, sensor=doc["sensorId"])
    wait_for(lambda: (service.record(doc["idempotencyKey"]) or {}).get("result") == "reached")
    status, text = http("GET", f"{service.url}/metrics")
    assert status == 200
    assert "tripline_call_results_total{" in text
    # `tripline run --workers N` serves every worker's samples with a `worker` label, plus
    # tripline_worker_up: the same exposition as it merges it, so both shapes are checked.
    (job,) = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())["scrape_configs"]
    exposition = Exposition.of(
        text + merge_metrics([text, text]).decode(),
        job=job["job_name"],
        vocabulary=VOCABULARY,
    )
    found = list(queries(load()))
    assert len(found) >= 40
    assert [p for q in found for p in exposition.problems(*q)] == []
