"""Every generated observability file, and which of them are out of date."""

from __future__ import annotations

from pathlib import Path

from serve_app.tools.observability import dashboard, ray_dashboards, rules

REPO = Path(__file__).resolve().parents[3]
COMMAND = "python -m serve_app.tools.observability"


def outputs() -> dict[Path, str]:
    """Every generated file (absolute path) -> its content."""
    files = {
        REPO / "deploy/grafana/multimodel-serve.json": dashboard.render(),
        REPO / "deploy/prometheus/prometheus.yml": rules.render_prometheus_local(),
        REPO / "deploy/prometheus/prometheus-cluster.yml": rules.render_prometheus_cluster(),
        REPO / "deploy/prometheus/rules/recording.yml": rules.render_recording(),
        REPO / "deploy/prometheus/rules/alerts.yml": rules.render_alerts(),
    }
    for name, content in ray_dashboards.render().items():
        files[REPO / "deploy/grafana/ray" / name] = content
    return files


def stale() -> list[Path]:
    """Generated files missing or different from what the generators produce now."""
    return [path for path, content in outputs().items() if not path.exists() or path.read_text() != content]
