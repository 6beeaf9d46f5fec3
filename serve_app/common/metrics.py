"""Every metric the app exports, defined once: name, buckets, tag keys, and the helpers that keep labels bounded.

Metrics go through `ray.serve.metrics`, so Ray's per-node exporter serves them (one port per node:
`SERVE_METRICS_PORT`, see serve_app/tools/launch.py) and Serve adds `deployment`, `replica` and
`application` to every series recorded in a replica. Ray prefixes `ray_` on export; Counters get
Prometheus' `_total`, Histograms `_bucket` / `_sum` / `_count`. Exported names (checked in a live
scrape of Ray 2.60):

| exported | type | labels (besides deployment, replica, application) |
|---|---|---|
| ray_mms_http_requests_total | counter | route, model, status, error_type |
| ray_mms_http_request_duration_seconds_bucket/_sum/_count | histogram, LATENCY_BUCKETS | route, model |
| ray_mms_llm_time_to_first_token_seconds_* | histogram, TTFT_BUCKETS | model, stream |
| ray_mms_llm_inter_token_latency_seconds_* | histogram, ITL_BUCKETS | model |
| ray_mms_llm_prompt_tokens_total | counter | model |
| ray_mms_llm_completion_tokens_total | counter | model |
| ray_mms_llm_requests_running | gauge | model |
| ray_mms_batch_size_* | histogram, BATCH_SIZE_BUCKETS | model |
| ray_mms_asr_audio_seconds_total | counter | model |
| ray_mms_asr_real_time_factor_* | histogram, RTF_BUCKETS | model |
| ray_mms_vector_store_operation_seconds_* | histogram, STORE_BUCKETS | operation |
| ray_mms_pipeline_stage_seconds_* | histogram, LATENCY_BUCKETS | pipeline, stage |
| ray_mms_pipeline_runs_total | counter | pipeline, outcome |
| ray_mms_batches | gauge | status |
| ray_mms_batch_lines_total | counter | outcome |
| ray_mms_batch_online_waits_total | counter | model |
| ray_mms_model_info | gauge (= 1) | model, kind, version, engine, device |
| ray_mms_gpu_memory_used_bytes | gauge | (none) |
| ray_mms_gpu_memory_budget_bytes | gauge | (none) |

Ray reserves `deployment`, `replica` and `application` for the tags it adds itself, so the
catalogue's "deployment" labels are Serve's. That is also why the metric objects are created
lazily, on first use: Serve only adds its tags to metrics created inside a replica, and a
replica imports this module (unpickling its deployment) before its replica context exists.

Ray 2.60 exports a gauge only in the report intervals (`RAY_metrics_report_interval_ms`, 10 s)
in which it was set, and its agent drops the series two intervals later: a gauge set once (model
info) would vanish within 20 s. In a replica, every gauge is therefore set again at its last value
twice per interval (`_GaugeKeeper`); counters and histograms are cumulative and need nothing.

Recording never fails a request: a sample that cannot be recorded is dropped (logged once per metric). Outside
a Ray worker (unit tests, `tests/http`) recording is a harmless no-op of Ray's own.

`SERVE_METRICS_ENABLED=0` in a replica's environment (an application's `runtime_env.env_vars`) turns
every recording into a no-op: what benchmarks/metrics_overhead.py compares against.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Container, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, ParamSpec, TypeVar

logger = logging.getLogger("ray.serve")
ENABLED = os.environ.get("SERVE_METRICS_ENABLED", "1") != "0"

# Bucket upper bounds (Prometheus `le`), fixed so dashboards and alerts can rely on them.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0)
RTF_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
# Embedded Qdrant answers in well under a millisecond: the store needs finer low buckets.
STORE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# Label values that stand for "no value" and "a value we will not export" (never the raw input).
NONE = "none"
UNKNOWN = "unknown"
OTHER = "other"

OK, ERROR, CANCELLED = "ok", "error", "cancelled"
PIPELINE_STAGES = {
    "video_summary": ("decode", "transcribe", "align", "diarize", "summarise"),
    "image_rag": ("detect", "embed", "search", "answer"),
}
VECTOR_STORE_OPERATIONS = frozenset(
    {
        "create_collection",
        "list_collections",
        "get_collection",
        "delete_collection",
        "add_items",
        "list_items",
        "get_item",
        "delete_item",
        "search",
        "search_vectors",
    }
)


class Metric:
    """One catalogue entry; the Ray metric behind it is made on first use, in the process that records."""

    __slots__ = ("kind", "name", "description", "tag_keys", "buckets", "_metric", "_warned")
    _lock = threading.Lock()

    def __init__(self, kind: str, name: str, description: str, tag_keys: tuple[str, ...] = (), buckets: tuple = ()):
        self.kind = kind
        self.name = name
        self.description = description
        self.tag_keys = tag_keys
        self.buckets = buckets
        self._metric: Any = None  # a ray.serve.metrics Histogram, Counter or Gauge, made on first use
        self._warned = False

    def inc(self, value: float = 1.0, tags: dict[str, str] | None = None) -> None:
        if value > 0:  # Ray refuses a zero increment; nothing happened anyway
            self._record("inc", value, tags)

    def observe(self, value: float, tags: dict[str, str] | None = None) -> None:
        self._record("observe", value, tags)

    def set(self, value: float, tags: dict[str, str] | None = None) -> None:
        self._record("set", value, tags)
        _gauges.keep(self, value, tags)

    def _record(self, method: str, value: float, tags: dict[str, str] | None) -> None:
        if not ENABLED:
            return
        try:
            metric = self._metric if self._metric is not None else self._create()
            getattr(metric, method)(value, tags)
        except Exception:
            # A bug here must cost a sample, never a request; one warning per metric, not one per request.
            if not self._warned:
                self._warned = True
                logger.warning("metric %s failed to record (later failures are not logged)", self.name, exc_info=True)

    def _create(self):
        from ray.serve import metrics

        with self._lock:
            if self._metric is None:
                if self.kind == "histogram":
                    self._metric = metrics.Histogram(
                        self.name, self.description, list(self.buckets), tag_keys=self.tag_keys
                    )
                else:
                    cls = metrics.Counter if self.kind == "counter" else metrics.Gauge
                    self._metric = cls(self.name, self.description, tag_keys=self.tag_keys)
            return self._metric


class _GaugeKeeper:
    """The last value of every gauge series of this process, set again twice per report interval in a Ray worker."""

    def __init__(self) -> None:
        self._last: dict[tuple, tuple[Metric, float, dict[str, str] | None]] = {}
        self._lock = threading.Lock()
        self.refreshing: bool | None = None  # decided at the first set, in the process that records

    def keep(self, metric: Metric, value: float, tags: dict[str, str] | None) -> None:
        key = (metric.name, tuple(sorted(tags.items())) if tags else ())
        with self._lock:
            self._last[key] = (metric, value, tags)
            decide = self.refreshing is None
            if decide:
                self.refreshing = _in_ray_worker()
        if decide and self.refreshing:
            period_s = _report_interval_s() / 2
            threading.Thread(target=self._loop, args=(period_s,), name="gauge-keeper", daemon=True).start()

    def refresh(self) -> None:
        with self._lock:
            last = list(self._last.values())
        for metric, value, tags in last:
            metric._record("set", value, tags)

    def _loop(self, period_s: float) -> None:
        while True:
            time.sleep(period_s)
            self.refresh()


def _in_ray_worker() -> bool:
    # Only replicas (and other Ray workers) export; a driver or a test process has nothing to keep alive.
    import ray

    return ray.is_initialized() and ray._private.worker.global_worker.mode == ray.WORKER_MODE


def _report_interval_s() -> float:
    import ray

    # What the worker's exporter uses: the configured interval, never under a second.
    return max(ray._config.metrics_report_interval_ms(), 1000) / 1000


_gauges = _GaugeKeeper()


def _counter(name: str, description: str, *tag_keys: str) -> Metric:
    return Metric("counter", name, description, tag_keys)


def _gauge(name: str, description: str, *tag_keys: str) -> Metric:
    return Metric("gauge", name, description, tag_keys)


def _histogram(name: str, description: str, buckets: tuple, *tag_keys: str) -> Metric:
    return Metric("histogram", name, description, tag_keys, buckets)


HTTP_REQUESTS = _counter(
    "mms_http_requests", "HTTP requests answered by the ingress.", "route", "model", "status", "error_type"
)
HTTP_DURATION = _histogram(
    "mms_http_request_duration_seconds",
    "Ingress request time, to the last byte of the response (streams included).",
    LATENCY_BUCKETS,
    "route",
    "model",
)
LLM_TTFT = _histogram(
    "mms_llm_time_to_first_token_seconds",
    "From an accepted generation to its first token; stream says whether it was a *_stream call.",
    TTFT_BUCKETS,
    "model",
    "stream",
)
LLM_ITL = _histogram(
    "mms_llm_inter_token_latency_seconds",
    "Seconds per output token after the first, a generation's mean (one sample per generation).",
    ITL_BUCKETS,
    "model",
)
LLM_PROMPT_TOKENS = _counter("mms_llm_prompt_tokens", "Prompt tokens of accepted generations.", "model")
LLM_COMPLETION_TOKENS = _counter(
    "mms_llm_completion_tokens", "Tokens generated (cancelled generations included).", "model"
)
LLM_RUNNING = _gauge("mms_llm_requests_running", "Generations in flight on the replica.", "model")
BATCH_SIZE = _histogram(
    "mms_batch_size", "Inputs per forward pass of a batched deployment.", BATCH_SIZE_BUCKETS, "model"
)
ASR_AUDIO_SECONDS = _counter("mms_asr_audio_seconds", "Seconds of audio transcribed.", "model")
ASR_RTF = _histogram(
    "mms_asr_real_time_factor",
    "Processing seconds (decode to last stage) per second of audio; below 1 is faster than real time.",
    RTF_BUCKETS,
    "model",
)
VECTOR_STORE_SECONDS = _histogram(
    "mms_vector_store_operation_seconds", "VectorStore calls, by operation.", STORE_BUCKETS, "operation"
)
PIPELINE_STAGE_SECONDS = _histogram(
    "mms_pipeline_stage_seconds",
    "Stage time of a completed pipeline run (one sample per stage per run).",
    LATENCY_BUCKETS,
    "pipeline",
    "stage",
)
PIPELINE_RUNS = _counter("mms_pipeline_runs", "Pipeline runs by outcome: ok, error, cancelled.", "pipeline", "outcome")
BATCHES = _gauge("mms_batches", "Batches of the Batch API by status (set by the runner).", "status")
BATCH_LINES = _counter("mms_batch_lines", "Batch lines finished, by outcome: completed, failed.", "outcome")
BATCH_ONLINE_WAITS = _counter(
    "mms_batch_online_waits", "Batch lines held back because online requests to their model came first.", "model"
)
MODEL_INFO = _gauge(
    "mms_model_info",
    "1 per loaded model replica; the labels say what it serves.",
    *("model", "kind", "version", "engine", "device"),
)
GPU_MEMORY_USED = _gauge("mms_gpu_memory_used_bytes", "GPU memory held by the replica's processes (NVML).")
GPU_MEMORY_BUDGET = _gauge("mms_gpu_memory_budget_bytes", "The replica's GPU-plan memory budget.")

CATALOGUE = tuple(m for m in globals().values() if isinstance(m, Metric))


def bounded(value: str | None, known: Container[str]) -> str:
    """A label from a closed set: the value when known, `none` when absent, else `unknown`."""
    if value is None:
        return NONE
    return value if value in known else UNKNOWN


def observe_stages(pipeline: str, stages: Mapping[str, float]) -> None:
    """One sample (and one log line, which carries Serve's request id) per stage of a completed run."""
    known = PIPELINE_STAGES[pipeline]
    for stage, seconds in stages.items():
        if stage not in known:
            raise ValueError(f"{pipeline} has no stage {stage!r}; stages are {known}")
        logger.info("%s stage %s took %.3fs", pipeline, stage, seconds)
        PIPELINE_STAGE_SECONDS.observe(seconds, {"pipeline": pipeline, "stage": stage})


@contextmanager
def pipeline_run(pipeline: str) -> Iterator[None]:
    """Counts the run by how it ended: ok, error, or cancelled (the caller went away)."""
    if pipeline not in PIPELINE_STAGES:
        raise ValueError(f"unknown pipeline {pipeline!r}")
    started = time.perf_counter()
    outcome = ERROR
    try:
        yield
        outcome = OK
    except (asyncio.CancelledError, GeneratorExit):
        outcome = CANCELLED
        raise
    finally:
        PIPELINE_RUNS.inc(1, {"pipeline": pipeline, "outcome": outcome})
        logger.info("%s run %s after %.3fs", pipeline, outcome, time.perf_counter() - started)


P = ParamSpec("P")
R = TypeVar("R")
# Set while a store operation runs, so one it calls on itself (search -> get_collection) is not timed twice.
_in_store_operation: ContextVar[bool] = ContextVar("in_store_operation", default=False)


def timed_store_operation(operation: str) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """A VectorStore method decorator: its seconds as `mms_vector_store_operation_seconds`, failures included."""
    if operation not in VECTOR_STORE_OPERATIONS:
        raise ValueError(f"{operation!r} is not in VECTOR_STORE_OPERATIONS")
    tags = {"operation": operation}

    def decorate(method: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        # Serve pickles a deployment class by value, with what its methods refer to: this wrapper only
        # refers to a module-level function (pickled by reference), never to the ContextVar itself.
        @functools.wraps(method)
        async def timed(*args: P.args, **kwargs: P.kwargs) -> R:
            return await _timed_store_call(method, tags, args, kwargs)

        return timed

    return decorate


async def _timed_store_call(method: Callable[..., Awaitable[Any]], tags: dict[str, str], args, kwargs) -> Any:
    if _in_store_operation.get():
        return await method(*args, **kwargs)
    token = _in_store_operation.set(True)
    started = time.perf_counter()
    try:
        return await method(*args, **kwargs)
    finally:
        VECTOR_STORE_SECONDS.observe(time.perf_counter() - started, tags)
        _in_store_operation.reset(token)
