"""The dashboard's Batches row: the Batch API's batches by status, its lines per second, and how often
a line waited because online traffic came first. Kept apart so dashboard.py stays one screenful per row."""

from __future__ import annotations

from serve_app.tools.observability import catalogue as c
from serve_app.tools.observability.grafana import Panel, Row, Target

RATE = "[$__rate_interval]"


def batches_row() -> Row:
    return Row(
        "Batches",
        (
            Panel(
                "Batches by status",
                "Batch API batches in each status (set by the BatchRunner): in_progress ones are running now.",
                (Target(f"sum by (status) ({c.BATCHES.series})", "{{status}}"),),
            ),
            Panel(
                "Batch lines per second",
                "Lines finished per second, completed and failed: a batch's throughput.",
                (Target(f"sum by (outcome) (rate({c.BATCH_LINES.series}{RATE}))", "{{outcome}}"),),
            ),
            Panel(
                "Batch lines held for online traffic",
                "Lines per second that waited because online requests to their model came first.",
                (Target(f"sum by (model) (rate({c.BATCH_ONLINE_WAITS.series}{RATE}))", "{{model}}"),),
            ),
        ),
    )
