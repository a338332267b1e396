"""How tests/deploy/test_grafana_dashboard.py reads a Grafana dashboard: its panels, its queries
with Grafana's variables filled in, and the metrics, labels and values each query asks for."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import promql_parser
from prometheus_client.parser import text_string_to_metric_families

DEPLOY = Path(__file__).parent.parent.parent / "deploy"
GRAFANA = DEPLOY / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "tripline.json"

# Grafana's own variables, as it fills them in for a 6 h view scraped every 15 s.
BUILTINS = {"__rate_interval": "1m", "__interval": "15s", "__range": "6h"}
_VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)(?::\w+)?\}")
_OPS = (
    (promql_parser.MatchOp.Equal, "="),
    (promql_parser.MatchOp.NotEqual, "!="),
    (promql_parser.MatchOp.Re, "=~"),
    (promql_parser.MatchOp.NotRe, "!~"),
)
# Prometheus adds these to every series it scrapes.
SCRAPE_LABELS = frozenset({"job", "instance"})
_LABEL_VALUES = re.compile(r"^label_values\((.+),\s*(\w+)\)$")


def load() -> dict[str, Any]:
    """The shipped dashboard."""
    doc: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return doc


def panels(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows included, and those inside a collapsed row."""
    for panel in doc.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def queries(doc: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(where, PromQL, legend) of every panel target and query variable, variables filled in."""
    for panel in panels(doc):
        for target in panel.get("targets", []):
            where = f"{panel['title']!r} {target['refId']}"
            yield where, fill(doc, target["expr"]), target.get("legendFormat", "")
    for variable in doc["templating"]["list"]:
        if variable["type"] == "query":
            found = _LABEL_VALUES.match(fill(doc, variable["query"]["query"]))
            assert found, f"variable {variable['name']}: not label_values(selector, label)"
            selector, label = found.groups()
            yield f"variable {variable['name']}", f"count by ({label}) ({selector})", ""


def fill(doc: dict[str, Any], text: str) -> str:
    """`text` with Grafana's variables and the dashboard's own replaced by a value of each.

    A variable that offers All stands for its allValue; another for its current value.

    Raises:
        AssertionError: a variable the dashboard does not define.
    """
    values = dict(BUILTINS)
    for variable in doc["templating"]["list"]:
        current = variable.get("current", {}).get("value")
        values[variable["name"]] = (
            variable["allValue"] if variable.get("includeAll") else str(current)
        )

    def value(found: re.Match[str]) -> str:
        name = found.group(1) or found.group(2)
        assert name in values, f"${name} is not a variable of the dashboard: {text}"
        return values[name]

    return _VARIABLE.sub(value, text)


# --- the metrics and labels a query asks for ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Selector:
    """One metric a query selects, with its label matchers."""

    name: str
    matchers: tuple[tuple[str, str, str], ...]
    """(label, operator, value): `=`, `!=`, `=~` or `!~`."""


@dataclass(frozen=True, slots=True)
class Grouping:
    """Labels a `by`, `without`, `on`, `ignoring` or `group_*` clause names."""

    labels: tuple[str, ...]
    over: frozenset[str]
    """The metrics the clause applies to: each label must be on at least one of them."""


@dataclass(frozen=True, slots=True)
class Query:
    """What one PromQL expression asks of the metrics."""

    selectors: tuple[Selector, ...]
    groupings: tuple[Grouping, ...]


def read(expr: str) -> Query:
    """The selectors and label clauses of a PromQL expression (raises on a syntax error)."""
    tree = promql_parser.parse(expr)
    selectors: list[Selector] = []
    groupings: list[Grouping] = []

    def visit(node: promql_parser.Expr) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            matchers = tuple((m.name, _op(m.op), m.value) for m in node.matchers.matchers)
            selectors.append(Selector(node.name or "", matchers))
        elif isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            groupings.append(Grouping(tuple(node.modifier.labels), _names(node.expr)))
        elif isinstance(node, promql_parser.BinaryExpr) and node.modifier is not None:
            over = _names(node.lhs) | _names(node.rhs)
            if node.modifier.matching is not None:
                groupings.append(Grouping(tuple(node.modifier.matching.labels), over))
            if node.modifier.group_labels:
                groupings.append(Grouping(tuple(node.modifier.group_labels), over))
        return True

    promql_parser.walk(tree, visit)
    return Query(tuple(selectors), tuple(groupings))


def _op(op: promql_parser.MatchOp) -> str:
    # The binding's MatchOp members compare equal but neither hash nor have a name.
    return next(text for member, text in _OPS if op == member)


def _names(node: promql_parser.Expr) -> frozenset[str]:
    found: set[str] = set()

    def visit(inner: promql_parser.Expr) -> bool:
        if isinstance(inner, promql_parser.VectorSelector) and inner.name:
            found.add(inner.name)
        return True

    promql_parser.walk(node, visit)
    return frozenset(found)


@dataclass(frozen=True, slots=True)
class Exposition:
    """What a /metrics exposition offers a query, as Prometheus scrapes it."""

    labels: dict[str, set[str]]
    """Label names per sample name (`_bucket`, `_count`, `_sum` and `_total` included)."""
    values: dict[tuple[str, str], set[str]]
    """Values seen per (sample name, label)."""
    job: str
    """The scrape job's name: Prometheus adds `job` and `instance` to every series, and
    `up{job, instance}` of each target."""
    vocabulary: dict[tuple[str, str], set[str]]
    """Every value a (sample name, label) may take: a counter shows a value only once it
    happened."""

    @classmethod
    def of(cls, text: str, *, job: str, vocabulary: dict[tuple[str, str], set[str]]) -> Exposition:
        """Read an exposition in Prometheus' text format."""
        labels: dict[str, set[str]] = {"up": set()}
        values: dict[tuple[str, str], set[str]] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels.setdefault(sample.name, set()).update(sample.labels)
                for label, value in sample.labels.items():
                    values.setdefault((sample.name, label), set()).add(value)
        return cls(labels, values, job, vocabulary)

    def problems(self, where: str, expr: str, legend: str = "") -> list[str]:
        """Each metric, label, label value, label clause and legend label the query names
        that the exposition does not offer."""
        query = read(expr)
        found = [p for s in query.selectors for p in self._selector(s)]
        grouped: set[str] = set()
        for grouping in query.groupings:
            offered = set().union(*(self.labels.get(n, set()) for n in grouping.over))
            missing = set(grouping.labels) - offered - SCRAPE_LABELS
            found += [f"no metric it groups has {sorted(missing)}"] if missing else []
            grouped |= set(grouping.labels)
        shown = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", legend)) - grouped
        found += [f"the legend shows {sorted(shown)}, which it is not grouped by"] if shown else []
        return [f"{where}: {p}" for p in found]

    def _selector(self, selector: Selector) -> list[str]:
        if selector.name not in self.labels:
            return [f"{selector.name} is not on /metrics"]
        found = []
        for label, op, value in selector.matchers:
            if label not in self.labels[selector.name] | SCRAPE_LABELS:
                found.append(f"{selector.name} has no label {label}")
            elif label != "instance":  # a target's address: any value
                known = self._values(selector.name, label)
                found += [
                    f"{selector.name}{{{label}={option!r}}} is never exposed"
                    for option in alternatives(op, value) or ()
                    if option not in known
                ]
        return found

    def _values(self, name: str, label: str) -> set[str]:
        if label == "job":
            return {self.job}
        return self.vocabulary.get((name, label)) or self.values.get((name, label), set())


def alternatives(op: str, value: str) -> list[str] | None:
    """The label values a matcher names: one for = and !=, each of a|b|c for =~ and !~.

    None for a regex that is more than a list of literal values (`.*`: it names none).
    """
    if op in ("=", "!="):
        return [value]
    options = value.split("|")
    return options if all(re.fullmatch(r"[\w.]+", o) for o in options) else None
