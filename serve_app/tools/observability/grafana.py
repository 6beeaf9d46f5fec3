"""Grafana dashboard JSON from panels as data: Target, Panel and Row, and the JSON Grafana 10+ loads.

Nothing here knows the app's metrics: dashboard.py says what to show, this module how Grafana spells it.
Every query reads the Prometheus data source the dashboard's `datasource` variable picks; panels flow
left to right on Grafana's 24-column grid, wrapping when a row's line is full.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
GRID_WIDTH = 24


@dataclass(frozen=True)
class Target:
    expr: str
    legend: str = ""
    instant: bool = False
    format: str = "time_series"  # "table" | "heatmap"


@dataclass(frozen=True)
class Panel:
    title: str
    description: str
    targets: tuple[Target, ...]
    unit: str = "short"
    kind: str = "timeseries"  # "timeseries" | "stat" | "table" | "bargauge"
    width: int = 12
    height: int = 8
    stacked: bool = False
    thresholds: tuple[tuple[float | None, str], ...] = ()  # (from value, colour); the first is from -inf (None)
    dashed: str = ""  # regex of series names drawn as dashed lines (limits next to what they bound)
    repeat: str = ""  # a template variable: one copy of the panel per value
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...]


def _target_json(target: Target, ref: str) -> dict:
    out = {"datasource": DATASOURCE, "expr": target.expr, "legendFormat": target.legend or "__auto", "refId": ref}
    if target.instant:
        out.update({"instant": True, "range": False})
    else:
        out["range"] = True
    if target.format != "time_series":
        out["format"] = target.format
    return out


def _thresholds(panel: Panel) -> dict:
    steps = panel.thresholds or ((None, "green"),)
    return {"mode": "absolute", "steps": [{"color": colour, "value": value} for value, colour in steps]}


def _panel_json(panel: Panel, panel_id: int, pos: dict) -> dict:
    defaults: dict = {"unit": panel.unit, "thresholds": _thresholds(panel), "color": {"mode": "palette-classic"}}
    overrides: list = []
    options: dict
    if panel.kind == "timeseries":
        defaults["min"] = 0
        defaults["custom"] = {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 30 if panel.stacked else 5,
            "showPoints": "never",
            "spanNulls": False,
            "stacking": {"mode": "normal" if panel.stacked else "none", "group": "A"},
            "thresholdsStyle": {"mode": "dashed" if panel.thresholds else "off"},
        }
        if panel.dashed:
            overrides.append(
                {
                    "matcher": {"id": "byRegexp", "options": panel.dashed},
                    "properties": [
                        {"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}},
                        {"id": "custom.lineWidth", "value": 2},
                        {"id": "custom.fillOpacity", "value": 0},
                    ],
                }
            )
        options = {
            "legend": {"displayMode": "table", "placement": "bottom", "calcs": ["mean", "max", "lastNotNull"]},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    elif panel.kind == "stat":
        defaults["color"] = {"mode": "thresholds"}
        options = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "background" if panel.thresholds else "value",
            "graphMode": "area",
            "textMode": "auto",
        }
    elif panel.kind == "bargauge":
        options = {
            "orientation": "horizontal",
            "displayMode": "gradient",
            "showUnfilled": True,
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        }
    elif panel.kind == "table":
        options = {"showHeader": True, "cellHeight": "sm"}
    else:
        raise ValueError(f"unknown panel kind {panel.kind!r}")
    out = {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": pos,
        "fieldConfig": {"defaults": defaults, "overrides": overrides},
        "options": options,
        "targets": [_target_json(t, chr(ord("A") + i)) for i, t in enumerate(panel.targets)],
    }
    if panel.repeat:
        out.update({"repeat": panel.repeat, "repeatDirection": "h", "maxPerRow": GRID_WIDTH // panel.width})
    out.update(panel.extra)
    return out


def query_variable(name: str, label: str, query: str) -> dict:
    """A multi-value template variable (All by default) over a Prometheus query's values."""
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "definition": query,
        "query": {"query": query, "refId": f"{name}-values"},
        "refresh": 2,  # on time range change: replicas and models come and go
        "multi": True,
        "includeAll": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
        "hide": 0,
    }


def _templating(variables: Iterable[dict]) -> dict:
    return {
        "list": [
            {
                "name": "datasource",
                "label": "Data source",
                "type": "datasource",
                "query": "prometheus",
                "current": {},
                "hide": 0,
                "refresh": 1,
            },
            *variables,
        ]
    }


def _layout(rows: Iterable[Row]) -> list[dict]:
    """Each row's header, then its panels left to right, a new line when the next would pass the grid's edge."""
    panels: list[dict] = []
    next_id = 1
    y = 0
    for row in rows:
        panels.append(
            {
                "id": next_id,
                "type": "row",
                "title": row.title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": GRID_WIDTH, "x": 0, "y": y},
                "panels": [],
            }
        )
        next_id += 1
        y += 1
        x, line_height = 0, 0
        for panel in row.panels:
            if x + panel.width > GRID_WIDTH:
                x, y, line_height = 0, y + line_height, 0
            panels.append(_panel_json(panel, next_id, {"h": panel.height, "w": panel.width, "x": x, "y": y}))
            next_id += 1
            x += panel.width
            line_height = max(line_height, panel.height)
        y += line_height
    return panels


def dashboard_json(
    *, title: str, uid: str, description: str, tags: Iterable[str], variables: Iterable[dict], rows: Iterable[Row]
) -> dict:
    """The whole dashboard: `variables` (query_variable's) follow the data-source picker, `rows` fill the grid."""
    return {
        "title": title,
        "uid": uid,
        "description": description,
        "tags": list(tags),
        "editable": True,
        "graphTooltip": 1,
        "timezone": "browser",
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "30s",
        "schemaVersion": 39,
        "version": 1,
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "templating": _templating(variables),
        "panels": _layout(rows),
    }
