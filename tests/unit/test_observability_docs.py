"""docs/grafana/flareport.json and docs/prometheus/alerts.yml use only metrics and labels the code defines.

The metrics are read from the source (every ``Counter``/``Gauge``/``Histogram``/``Summary`` whose name starts with
``flareport_``, with its label names), so a renamed metric or label breaks this test instead of leaving an empty
panel or an alert that can never fire. Names are the series Prometheus stores: a counter's ``_total``, a
histogram's ``_bucket``/``_sum``/``_count`` (``le`` on buckets); ``job`` and ``instance`` are added by the scrape.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "docs" / "grafana" / "flareport.json"
ALERTS = ROOT / "docs" / "prometheus" / "alerts.yml"
SCRAPE_LABELS = frozenset({"job", "instance"})
BUILTIN = {"up": SCRAPE_LABELS}  # the scrape's own series
KINDS = {"Counter", "Gauge", "Histogram", "Summary"}
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset"}

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_SELECTOR = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*\{([^}]*)\}")
_MATCHER = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_IDENT = re.compile(r"(?<![A-Za-z0-9_:.$])([A-Za-z_:][A-Za-z0-9_:]*)(?![A-Za-z0-9_:])(?!\s*\()")  # not a function
_TEMPLATE = re.compile(r"\{\{\s*(?:\$labels\.)?([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def _labels(node: ast.Call) -> tuple[str, ...]:
    found: ast.expr | None = node.args[2] if len(node.args) > 2 else None
    for keyword in node.keywords:
        if keyword.arg == "labelnames":
            found = keyword.value
    if isinstance(found, ast.List | ast.Tuple):
        return tuple(e.value for e in found.elts if isinstance(e, ast.Constant) and isinstance(e.value, str))
    return ()


def code_metrics() -> dict[str, tuple[str, frozenset[str]]]:
    """Every metric the services and libraries define: name -> (kind, label names)."""
    metrics: dict[str, tuple[str, frozenset[str]]] = {}
    for path in [*ROOT.glob("libs/*/*/**/*.py"), *ROOT.glob("services/*/*/**/*.py")]:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            kind = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
            first = node.args[0]
            if kind in KINDS and isinstance(first, ast.Constant) and str(first.value).startswith("flareport_"):
                metrics[str(first.value)] = (kind, frozenset(_labels(node)))
    return metrics


def series(metrics: dict[str, tuple[str, frozenset[str]]]) -> dict[str, frozenset[str]]:
    """The series names Prometheus stores for ``metrics``, with the labels each carries."""
    out: dict[str, frozenset[str]] = {name: labels for name, labels in BUILTIN.items()}
    for name, (kind, labels) in metrics.items():
        labels = labels | SCRAPE_LABELS
        if kind == "Counter":
            out[name.removesuffix("_total") + "_total"] = labels
        elif kind == "Gauge":
            out[name] = labels
        else:
            out.update({f"{name}_sum": labels, f"{name}_count": labels, f"{name}_bucket": labels | {"le"}})
    return out


def problems(expr: str, known: dict[str, frozenset[str]], templates: str = "") -> list[str]:
    """What in one PromQL expression (and the ``{{label}}`` templates shown with it) the code does not define."""
    text = re.sub(r"\$__\w+", "5m", expr)
    found: list[str] = []
    used: set[str] = set()
    for name, matchers in _SELECTOR.findall(_STRING.sub('""', text)):
        for label in _MATCHER.findall(matchers):
            if name in known and label not in known[name]:
                found.append(f"{name} has no label {label!r}")
    bare = _SELECTOR.sub(lambda m: m.group(1), _STRING.sub('""', text))
    grouped = [label.strip() for group in _GROUPING.findall(bare) for label in group.split(",") if label.strip()]
    bare = _GROUPING.sub(" ", re.sub(r"\[[^\]]*\]", "", bare))
    for name in _IDENT.findall(bare):
        if name in KEYWORDS:
            continue
        if name not in known:
            found.append(f"unknown metric {name!r}")
        used.add(name)
    offered = set().union(*(known.get(name, frozenset()) for name in used)) if used else set()
    for label in [*grouped, *_TEMPLATE.findall(templates)]:
        if label not in offered:
            found.append(f"label {label!r} is on none of {sorted(used)}")
    return found


def dashboard_queries() -> Iterator[tuple[str, str, str]]:
    def walk(panels: list[dict[str, Any]]) -> Iterator[tuple[str, str, str]]:
        for panel in panels:
            for target in panel.get("targets", []):
                yield panel["title"], target["expr"], target.get("legendFormat", "")
            yield from walk(panel.get("panels", []))

    yield from walk(json.loads(DASHBOARD.read_text())["panels"])


def alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_every_dashboard_query_uses_metrics_and_labels_the_code_defines() -> None:
    known = series(code_metrics())
    queries = list(dashboard_queries())
    assert len(queries) >= 20, "the dashboard covers the api, streams, reconciler, dns-worker and agents"
    wrong = {f"{title}: {expr}": found for title, expr, legend in queries if (found := problems(expr, known, legend))}
    assert wrong == {}, f"dashboard queries with metrics or labels the code does not define: {wrong}"


def test_every_alert_uses_metrics_and_labels_the_code_defines() -> None:
    known = series(code_metrics())
    rules = alert_rules()
    assert {"FlareportDeadLetters", "FlareportAgentKeysRecovered", "FlareportRedisErrors"} <= {
        r["alert"] for r in rules
    }, "the alerts docs/operations.md recommends are there"
    wrong = {}
    for rule in rules:
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        if found := problems(rule["expr"], known, json.dumps(rule["annotations"])):
            wrong[rule["alert"]] = found
    assert wrong == {}, f"alerts with metrics or labels the code does not define: {wrong}"


def test_the_check_reports_an_unknown_metric_a_missing_label_and_a_suffix_the_kind_lacks() -> None:
    known = series(code_metrics())
    assert problems('sum by (stream) (rate(flareport_stream_messages_total{outcome="acked"}[5m]))', known) == []
    assert problems("rate(flareport_stream_handler_duration_seconds_count[$__rate_interval])", known) == []
    assert problems("rate(flareport_no_such_thing_total[5m])", known) == [
        "unknown metric 'flareport_no_such_thing_total'"
    ]
    assert problems('flareport_api_requests_total{tenant="a"}', known) == [
        "flareport_api_requests_total has no label 'tenant'"
    ]
    assert problems("sum by (tenant) (flareport_agent_buffered_events)", known) == [
        "label 'tenant' is on none of ['flareport_agent_buffered_events']"
    ]
    assert problems("flareport_agent_buffered_events_bucket", known), "a gauge has no buckets"
