"""Metric names read from PromQL: what the shipped dashboard (and rules) query, against what a scrape shows.

    from tests.observability import dashboard_metric_names, scrape_metric_names
    missing = dashboard_metric_names(DASHBOARD) - scrape_metric_names(text_of_a_metrics_endpoint)

Both sides go through `base_name`, so a histogram is its family name on either side (a query names
`x_bucket`, a scrape shows `x_bucket`, `x_sum`, `x_count`: all are `x`), and a counter stays `x_total`.
Only plain text parsing: nothing here imports the generator that wrote the dashboard.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import yaml

HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")

_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.I)
_NAME = re.compile(r"(?<![\w.$:])[A-Za-z_:][A-Za-z0-9_:]*")
_KEYWORDS = {
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "inf",
    "nan",
}
_LABEL_VALUES = re.compile(r"^\s*label_values\((.*),\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*$", re.S)


def base_name(name: str) -> str:
    """The family name: `x_bucket`/`x_sum`/`x_count` -> `x`; anything else as it is."""
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name


def promql_metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (functions, keywords, labels, durations and Grafana `$vars` left out).

    A name written as `{__name__="x"}` is not recognised: the shipped files name metrics plainly.
    """
    text = _STRING.sub(" ", expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGES.sub(" ", text)
    while _GROUPING.search(text):
        text = _GROUPING.sub(" ", text)
    names = set()
    for match in _NAME.finditer(text):
        word = match.group()
        rest = text[match.end() :].lstrip()
        if word.lower() in _KEYWORDS or rest.startswith("("):  # a keyword or a function call
            continue
        names.add(base_name(word))
    return names


def _dashboard_exprs(node) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("expr"), str):
            yield node["expr"]
        for value in node.values():
            yield from _dashboard_exprs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _dashboard_exprs(value)


def _variable_queries(dashboard: dict) -> Iterator[str]:
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        query = variable.get("query")
        query = query.get("query", "") if isinstance(query, dict) else query or ""
        match = _LABEL_VALUES.match(query)
        if match:  # label_values(METRIC_SELECTOR, label): the label is not a metric
            yield match.group(1)
        elif query.strip():
            yield query


def dashboard_exprs(path: Path | str) -> list[str]:
    """Every PromQL expression of a Grafana dashboard: panel targets (nested rows too) and query variables."""
    dashboard = json.loads(Path(path).read_text())
    return [*_dashboard_exprs(dashboard.get("panels", [])), *_variable_queries(dashboard)]


def dashboard_metric_names(path: Path | str) -> set[str]:
    """Every metric name the dashboard's PromQL reads, histograms by their base name (see `base_name`)."""
    return {name for expr in dashboard_exprs(path) for name in promql_metric_names(expr)}


def rules_metric_names(path: Path | str) -> set[str]:
    """Metric names a Prometheus rule file reads, less the series its own recording rules produce."""
    groups = yaml.safe_load(Path(path).read_text())["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    read = {name for rule in rules for name in promql_metric_names(rule["expr"])}
    return read - {rule["record"] for rule in rules if "record" in rule}


def scrape_metric_names(text: str) -> set[str]:
    """Metric names in a Prometheus text exposition (a /metrics body), histograms by their base name."""
    names = set()
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"[A-Za-z_:][A-Za-z0-9_:]*", line)
        if match:
            names.add(base_name(match.group()))
    return names
