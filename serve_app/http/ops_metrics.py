"""The console's Operations charts, computed server side from the app's own Prometheus metrics.

The browser never talks to Ray's ports: the Ingress scrapes the exporters itself (every alive Ray
node's metrics export port, or `ingress.console.metrics_urls`), keeps the few series the charts need
summed over replicas per model, and answers one small JSON document of points: request rate, 5xx
ratio (the same definition as deploy/prometheus/rules/recording.yml), p50/p99 request latency and
p50/p99 time to first token, each over the interval between two scrapes. Quantiles interpolate
inside histogram buckets as Prometheus' `histogram_quantile` does.

Scrapes are rate-limited (`min_interval_s`): a poll in between reuses the last one, so many open
consoles cost one scrape per interval. Only the first poll waits on the exporters; a later one
answers the points it has and starts the due scrape, whose point the next poll shows. Each replica
keeps its own short history; all of them read the same exporters, so any replica answers the same
figures.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import urllib.request
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from serve_app.config import ConsoleConfig

logger = logging.getLogger("ray.serve")

REQUESTS = "ray_mms_http_requests_total"
LATENCY = "ray_mms_http_request_duration_seconds_bucket"
TTFT = "ray_mms_llm_time_to_first_token_seconds_bucket"
# The console's own polling and the probes would drown the figures they are meant to show.
_IGNORED_ROUTES = ("/console/", "/ui", "/health", "/ready")
_MAX_SCRAPE_BYTES = 32 << 20

Buckets = dict[float, float]  # upper bound (le) -> cumulative count


@dataclass
class Snapshot:
    """Cumulative values at one scrape, summed over replicas, by model."""

    at: float
    requests: dict[str, float] = field(default_factory=dict)
    errors: dict[str, float] = field(default_factory=dict)
    latency: dict[str, Buckets] = field(default_factory=dict)
    ttft: dict[str, Buckets] = field(default_factory=dict)


def _ignored(route: str) -> bool:
    return route.startswith(_IGNORED_ROUTES)


def _add(target: dict[str, Buckets], model: str, le: str, value: float) -> None:
    bound = math.inf if le in ("+Inf", "Inf") else float(le)
    buckets = target.setdefault(model, {})
    buckets[bound] = buckets.get(bound, 0.0) + value


def _wanted(text: str) -> str:
    # Ray's exporter serves thousands of series; parsing only the three the charts read keeps a scrape cheap.
    return "\n".join(line for line in text.splitlines() if line.startswith((REQUESTS, LATENCY, TTFT)))


def parse_snapshot(texts: Iterable[str], at: float) -> Snapshot:
    """The series the charts need from Prometheus exposition texts (one per exporter)."""
    snap = Snapshot(at=at)
    for text in texts:
        for family in text_string_to_metric_families(_wanted(text)):
            for sample in family.samples:
                labels = sample.labels
                if sample.name == REQUESTS:
                    if _ignored(labels.get("route", "")):
                        continue
                    model = labels.get("model", "none")
                    snap.requests[model] = snap.requests.get(model, 0.0) + sample.value
                    if labels.get("status", "").startswith("5"):
                        snap.errors[model] = snap.errors.get(model, 0.0) + sample.value
                elif sample.name == LATENCY and not _ignored(labels.get("route", "")):
                    _add(snap.latency, labels.get("model", "none"), labels.get("le", "+Inf"), sample.value)
                elif sample.name == TTFT:
                    _add(snap.ttft, labels.get("model", "none"), labels.get("le", "+Inf"), sample.value)
    return snap


def quantile(q: float, buckets: Buckets) -> float | None:
    """`histogram_quantile(q, ...)` over cumulative buckets; None without observations."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    total = buckets[bounds[-1]]
    rank = q * total
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower  # beyond the last finite bucket: its bound, as Prometheus answers
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


def _delta(now: Buckets, before: Buckets | None) -> Buckets:
    # A counter reset (a replica restarted) makes a negative delta: count from zero again.
    before = before or {}
    delta = {le: now[le] - before.get(le, 0.0) for le in now}
    return now if any(v < 0 for v in delta.values()) else delta


def _rate(now: float, before: float) -> float:
    return now - before if now >= before else now


def point(before: Snapshot, now: Snapshot) -> dict:
    """One chart point: every figure over the interval between two snapshots, by model."""
    seconds = max(now.at - before.at, 1e-6)
    models: dict[str, dict[str, float | None]] = {}
    for model in sorted({*now.requests, *now.ttft}):
        requests = _rate(now.requests.get(model, 0.0), before.requests.get(model, 0.0))
        errors = _rate(now.errors.get(model, 0.0), before.errors.get(model, 0.0))
        latency = _delta(now.latency.get(model, {}), before.latency.get(model))
        ttft = _delta(now.ttft.get(model, {}), before.ttft.get(model))
        models[model] = {
            "rps": requests / seconds,
            "error_ratio": errors / requests if requests > 0 else None,
            "p50_s": quantile(0.5, latency),
            "p99_s": quantile(0.99, latency),
            "ttft_p50_s": quantile(0.5, ttft),
            "ttft_p99_s": quantile(0.99, ttft),
        }
    return {"t": now.at, "models": models}


def ray_node_urls() -> list[str]:
    """Every alive Ray node's metrics exporter (what Prometheus would scrape)."""
    import ray

    return [
        f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"
        for node in ray.nodes()
        if node.get("Alive") and node.get("MetricsExportPort")
    ]


def _fetch(url: str, timeout_s: float) -> str:
    with urllib.request.urlopen(url, timeout=timeout_s) as reply:  # noqa: S310 (operator-configured URLs)
        return reply.read(_MAX_SCRAPE_BYTES).decode("utf-8", "replace")


class OpsMetrics:
    """The points the Operations page draws, one per scrape, newest last."""

    def __init__(
        self,
        config: ConsoleConfig,
        urls: Callable[[], list[str]] | None = None,
        fetch: Callable[[str, float], str] = _fetch,
        clock: Callable[[], float] = time.time,
    ):
        self._config = config
        if urls is None:
            urls = (lambda: list(config.metrics_urls)) if config.metrics_urls else ray_node_urls
        self._urls = urls
        self._fetch = fetch
        self._clock = clock
        self._last: Snapshot | None = None
        self._points: deque[dict] = deque(maxlen=config.history_points)
        self._lock = asyncio.Lock()
        self._pending: asyncio.Task | None = None
        self._sources = 0

    async def document(self, models: Callable[[str], bool] = lambda _: True) -> dict:
        """The JSON the Operations page polls: points (filtered to the models the caller may see)."""
        if self._last is None:
            await self._scrape_when_due()  # the first poll waits: there is nothing to show yet
        elif self._due() and (self._pending is None or self._pending.done()):
            # Later polls never wait on an exporter: the next poll shows the point this one asked for.
            self._pending = asyncio.create_task(self._scrape_when_due())
        points = [{"t": p["t"], "models": {m: v for m, v in p["models"].items() if models(m)}} for p in self._points]
        return {
            "object": "console.metrics",
            "interval_s": self._config.min_interval_s,
            "sources": self._sources,
            "points": points,
        }

    def _due(self) -> bool:
        return self._last is None or self._clock() - self._last.at >= self._config.min_interval_s

    async def _scrape_when_due(self) -> None:
        async with self._lock:
            if not self._due():
                return
            try:
                await self._scrape()
            except Exception:  # a scrape costs a point, never a poll
                logger.warning("console metrics: scrape failed", exc_info=True)

    async def _scrape(self) -> None:
        urls = await asyncio.to_thread(self._urls)
        timeout = self._config.scrape_timeout_s
        results = await asyncio.gather(
            *(asyncio.to_thread(self._fetch, url, timeout) for url in urls), return_exceptions=True
        )
        texts = [r for r in results if isinstance(r, str)]
        for url, result in zip(urls, results, strict=True):
            if not isinstance(result, str):
                logger.warning("console metrics: scraping %s failed: %s", url, result)
        self._sources = len(texts)
        try:
            snap = parse_snapshot(texts, self._clock())
        except ValueError:
            logger.warning("console metrics: unparsable exposition text", exc_info=True)
            return
        if self._last is not None:
            self._points.append(point(self._last, snap))
        self._last = snap
