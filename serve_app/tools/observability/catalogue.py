"""Every metric the shipped dashboards and rules read, and the names Prometheus sees them under.

The app's metrics are created with `ray.serve.metrics` under the names below (`mms_...`). Ray's
exporter adds the `ray_` prefix, `_total` to counters and `_bucket`/`_sum`/`_count` to histograms:
that convention lives in `PREFIX`, `COUNTER_SUFFIX` and `HISTOGRAM_SUFFIXES` only, so if a live scrape
says otherwise, change it here and run `python -m serve_app.tools.observability`.

Inside a replica `ray.serve.metrics` adds `deployment`, `replica` and `application` to every metric
by itself (and refuses them as user tags); `labels` below are what a query may group by, Serve's
included where the catalogue relies on them.
"""

from __future__ import annotations

from dataclasses import dataclass

from serve_app.tools.kuberay import METRICS_PORT, SCRAPE_JOB

__all__ = ["METRICS_PORT", "SCRAPE_JOB"]

PREFIX = "ray_"
COUNTER_SUFFIX = "_total"
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")

INGRESS_DEPLOYMENT = "Ingress"  # configs/*.yaml: the deployment behind the HTTP routes
# Stage labels of mms_pipeline_stage_seconds, in the order a run goes through them.
PIPELINE_STAGES = {
    "video_summary": ("decode", "transcribe", "align", "summarise"),
    "image_rag": ("detect", "embed", "search", "answer"),
}


@dataclass(frozen=True)
class Metric:
    name: str  # as created in the process (ray.serve.metrics / Ray Serve itself), without Ray's prefix
    kind: str  # "counter" | "gauge" | "histogram"
    labels: tuple[str, ...]
    help: str

    @property
    def exported(self) -> str:
        """The base name Prometheus stores: a gauge's series, a counter's or histogram's family."""
        return PREFIX + self.name

    @property
    def series(self) -> str:
        """The series a query names: `ray_<name>_total` for a counter, `ray_<name>` for a gauge."""
        if self.kind == "histogram":
            raise TypeError(f"{self.name} is a histogram: use .bucket, .sum or .count")
        return self.exported + (COUNTER_SUFFIX if self.kind == "counter" else "")

    def _part(self, index: int) -> str:
        if self.kind != "histogram":
            raise TypeError(f"{self.name} is a {self.kind}, not a histogram")
        return self.exported + HISTOGRAM_SUFFIXES[index]

    @property
    def bucket(self) -> str:
        return self._part(0)

    @property
    def sum(self) -> str:
        return self._part(1)

    @property
    def count(self) -> str:
        return self._part(2)


def _counter(name: str, labels: tuple[str, ...], help: str) -> Metric:
    return Metric(name, "counter", labels, help)


def _gauge(name: str, labels: tuple[str, ...], help: str) -> Metric:
    return Metric(name, "gauge", labels, help)


def _histogram(name: str, labels: tuple[str, ...], help: str) -> Metric:
    return Metric(name, "histogram", labels, help)


# -- the app's (serve_app/common/metrics.py creates them) -------------------------------------------------------------

HTTP_REQUESTS = _counter(
    "mms_http_requests", ("route", "model", "status", "error_type"), "HTTP responses of the ingress by status"
)
HTTP_DURATION = _histogram(
    "mms_http_request_duration_seconds", ("route", "model"), "ingress request duration, to the last byte"
)
LLM_TTFT = _histogram("mms_llm_time_to_first_token_seconds", ("model", "stream"), "LLM time to first token")
LLM_ITL = _histogram("mms_llm_inter_token_latency_seconds", ("model",), "LLM mean time between a generation's tokens")
LLM_PROMPT_TOKENS = _counter("mms_llm_prompt_tokens", ("model",), "prompt tokens processed")
LLM_COMPLETION_TOKENS = _counter("mms_llm_completion_tokens", ("model",), "completion tokens generated")
LLM_RUNNING = _gauge("mms_llm_requests_running", ("model",), "LLM requests in the engine")
BATCH_SIZE = _histogram("mms_batch_size", ("deployment", "model"), "size of each @serve.batch call")
ASR_AUDIO_SECONDS = _counter("mms_asr_audio_seconds", ("model",), "seconds of audio transcribed")
ASR_RTF = _histogram("mms_asr_real_time_factor", ("model",), "transcription time / audio duration")
VECTOR_STORE_SECONDS = _histogram(
    "mms_vector_store_operation_seconds", ("operation",), "duration of a Qdrant operation"
)
PIPELINE_STAGE_SECONDS = _histogram(
    "mms_pipeline_stage_seconds", ("pipeline", "stage"), "duration of one stage of a pipeline run"
)
PIPELINE_RUNS = _counter("mms_pipeline_runs", ("pipeline", "outcome"), "pipeline runs by outcome")
MODEL_INFO = _gauge(
    "mms_model_info", ("model", "kind", "version", "engine", "device", "deployment"), "1 per loaded model"
)
GPU_MEMORY_USED = _gauge(
    "mms_gpu_memory_used_bytes", ("deployment", "replica"), "GPU memory a replica holds (allocator peak)"
)
GPU_MEMORY_BUDGET = _gauge(
    "mms_gpu_memory_budget_bytes", ("deployment",), "the deployment's gpu_plan memory budget per replica"
)
BATCHES = _gauge("mms_batches", ("status",), "Batch API batches by status")
BATCH_LINES = _counter("mms_batch_lines", ("outcome",), "Batch API lines finished, completed or failed")
BATCH_ONLINE_WAITS = _counter("mms_batch_online_waits", ("model",), "batch lines held back for online requests")

APP_METRICS = (
    HTTP_REQUESTS,
    HTTP_DURATION,
    LLM_TTFT,
    LLM_ITL,
    LLM_PROMPT_TOKENS,
    LLM_COMPLETION_TOKENS,
    LLM_RUNNING,
    BATCH_SIZE,
    ASR_AUDIO_SECONDS,
    ASR_RTF,
    VECTOR_STORE_SECONDS,
    PIPELINE_STAGE_SECONDS,
    PIPELINE_RUNS,
    MODEL_INFO,
    GPU_MEMORY_USED,
    GPU_MEMORY_BUDGET,
    BATCHES,
    BATCH_LINES,
    BATCH_ONLINE_WAITS,
)

# -- Ray Serve's own (ray/serve/_private: router.py, replica.py, deployment_state.py, request_ingress_metrics.py)

SERVE_REPLICA_HEALTHY = _gauge(
    "serve_deployment_replica_healthy",
    ("application", "deployment", "replica"),
    "1 per healthy replica (0 once it stops); summed by deployment it is the healthy replica count",
)
SERVE_QUEUED = _gauge(
    "serve_deployment_queued_queries",
    ("application", "deployment", "handle", "actor_id"),
    "requests waiting at a caller (proxy or handle) to be assigned a replica",
)
SERVE_PROCESSING = _gauge(
    "serve_replica_processing_queries", ("application", "deployment", "replica"), "requests a replica is running"
)
SERVE_HTTP_REQUESTS = _counter(
    "serve_num_http_requests",
    ("application", "route", "method", "status_code"),
    "requests at Serve's HTTP proxies, including those refused before the ingress (503 back-pressure)",
)
SERVE_ONGOING_HTTP = _gauge(
    "serve_num_ongoing_http_requests", ("node_id", "node_ip_address"), "requests open at each HTTP proxy"
)

SERVE_METRICS = (SERVE_REPLICA_HEALTHY, SERVE_QUEUED, SERVE_PROCESSING, SERVE_HTTP_REQUESTS, SERVE_ONGOING_HTTP)


def exported_names() -> set[str]:
    """Every series name a scrape shows for the catalogue (histograms as their base name)."""
    return {m.exported if m.kind == "histogram" else m.series for m in (*APP_METRICS, *SERVE_METRICS)}
