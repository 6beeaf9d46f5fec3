"""deploy/grafana/multimodel-serve.json: the app's Grafana dashboard, its panels as data.

Every query reads raw series (no recording rules), so the dashboard works against any Prometheus
that scrapes the app, whether or not it loaded deploy/prometheus/rules/. Rates use Grafana's
`$__rate_interval`; `${datasource}` picks the Prometheus data source, `$model` filters the model
panels and `$deployment` repeats the batch-size distribution. What to show lives here; how Grafana's
JSON spells it, in grafana.py.
"""

from __future__ import annotations

import json

from serve_app.tools.observability import catalogue as c
from serve_app.tools.observability.dashboard_batches import batches_row
from serve_app.tools.observability.grafana import Panel, Row, Target, dashboard_json, query_variable

UID = "multimodel-serve"
RATE = "[$__rate_interval]"
MODEL = 'model=~"$model"'
HIDDEN_COLUMNS = {"Time": True, "Value": True}  # an info metric's table: its labels are the content

# -- PromQL ----------------------------------------------------------------------------------------------------


def _sel(series: str, *matchers: str) -> str:
    inner = ",".join(m for m in matchers if m)
    return f"{series}{{{inner}}}" if inner else series


def rate(series: str, *matchers: str) -> str:
    return f"rate({_sel(series, *matchers)}{RATE})"


def sum_rate(by: str, series: str, *matchers: str) -> str:
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} ({rate(series, *matchers)})"


def quantile(q: float, metric: c.Metric, by: str, *matchers: str) -> str:
    keys = ", ".join(["le", *([by] if by else [])])
    return f"histogram_quantile({q}, sum by ({keys}) ({rate(metric.bucket, *matchers)}))"


def mean(metric: c.Metric, by: str, *matchers: str) -> str:
    return f"{sum_rate(by, metric.sum, *matchers)} / {sum_rate(by, metric.count, *matchers)}"


def p50_p99(metric: c.Metric, by: str, legend: str, *matchers: str) -> tuple[Target, Target]:
    return (
        Target(quantile(0.5, metric, by, *matchers), f"p50 {legend}".strip()),
        Target(quantile(0.99, metric, by, *matchers), f"p99 {legend}".strip()),
    )


ERRORS = 'status=~"5.."'  # server errors: what the error-ratio alert counts (4xx is the client's mistake)
NOT_HEALTH_CHECKS = 'route!~"/-/.*"'  # Serve's health routes (/-/healthz, /-/routes), as Ray's dashboards do
INGRESS = f'deployment="{c.INGRESS_DEPLOYMENT}"'


# -- the panels ------------------------------------------------------------------------------------------------


def _overview() -> Row:
    requests = c.HTTP_REQUESTS.series
    return Row(
        "Overview",
        (
            Panel(
                "Requests/s",
                "Responses the ingress sent, all routes (the $model filter applies).",
                (Target(sum_rate("", requests, MODEL)),),
                unit="reqps",
                kind="stat",
                width=6,
                height=4,
            ),
            Panel(
                "5xx ratio",
                "Share of responses with a 5xx status over the rate window.",
                (Target(f"(sum ({rate(requests, ERRORS, MODEL)}) or vector(0)) / {sum_rate('', requests, MODEL)}"),),
                unit="percentunit",
                kind="stat",
                width=6,
                height=4,
                thresholds=((None, "green"), (0.01, "orange"), (0.05, "red")),
            ),
            Panel(
                "p99 latency",
                "99th percentile of the ingress request duration, all routes.",
                (Target(quantile(0.99, c.HTTP_DURATION, "", MODEL)),),
                unit="s",
                kind="stat",
                width=6,
                height=4,
            ),
            Panel(
                "Healthy Ingress replicas",
                "Replicas of the HTTP ingress passing Serve's health check. 0: the API is down.",
                (Target(f"sum ({_sel(c.SERVE_REPLICA_HEALTHY.series, INGRESS)})"),),
                kind="stat",
                width=6,
                height=4,
                thresholds=((None, "red"), (1, "orange"), (2, "green")),
            ),
        ),
    )


def _golden_signals() -> Row:
    requests = c.HTTP_REQUESTS.series
    by = "route, model"
    not_ok = 'status!~"2.."'
    return Row(
        "Golden signals (ingress)",
        (
            Panel(
                "Requests/s by route",
                "Traffic per HTTP route, from the ingress's metrics middleware.",
                (Target(sum_rate("route", requests, MODEL), "{{route}}"),),
                unit="reqps",
            ),
            Panel(
                "Requests/s by model",
                "Traffic per served model id (the request's `model`).",
                (Target(sum_rate("model", requests, MODEL), "{{model}}"),),
                unit="reqps",
            ),
            Panel(
                "5xx ratio by route and model",
                "Server errors / all responses. The error-ratio alert fires above 5% for 5 minutes.",
                (
                    Target(
                        f"{sum_rate(by, requests, ERRORS, MODEL)} / {sum_rate(by, requests, MODEL)}",
                        "{{route}} {{model}}",
                    ),
                ),
                unit="percentunit",
                thresholds=((None, "green"), (0.05, "red")),
            ),
            Panel(
                "Errors/s by status and type",
                "Non-2xx responses by status and the OpenAI error type of their envelope.",
                (Target(sum_rate("status, error_type", requests, not_ok, MODEL), "{{status}} {{error_type}}"),),
                unit="reqps",
                stacked=True,
            ),
            Panel(
                "Latency p50 / p99 by route",
                "Ingress request duration (a stream counts to its last event).",
                p50_p99(c.HTTP_DURATION, "route", "{{route}}", MODEL),
                unit="s",
            ),
            Panel(
                "Latency p50 / p99 by model",
                "Ingress request duration per served model.",
                p50_p99(c.HTTP_DURATION, "model", "{{model}}", MODEL),
                unit="s",
            ),
        ),
    )


def _llm() -> Row:
    return Row(
        "LLM",
        (
            Panel(
                "Time to first token p50 / p99",
                "From the request reaching the LLM deployment to its first token, streamed or not.",
                p50_p99(c.LLM_TTFT, "model, stream", "{{model}} stream={{stream}}", MODEL),
                unit="s",
                thresholds=((None, "green"), (2, "red")),
            ),
            Panel(
                "Inter-token latency p50 / p99",
                "Time between consecutive tokens of a stream.",
                p50_p99(c.LLM_ITL, "model", "{{model}}", MODEL),
                unit="s",
            ),
            Panel(
                "Tokens/s",
                "Prompt tokens read and completion tokens generated, per model.",
                (
                    Target(sum_rate("model", c.LLM_COMPLETION_TOKENS.series, MODEL), "completion {{model}}"),
                    Target(sum_rate("model", c.LLM_PROMPT_TOKENS.series, MODEL), "prompt {{model}}"),
                ),
            ),
            Panel(
                "Requests running in the engine",
                "Sequences the engines hold now, all replicas (vLLM: running + waiting in its scheduler).",
                (Target(f"sum by (model) ({_sel(c.LLM_RUNNING.series, MODEL)})", "{{model}}"),),
            ),
        ),
    )


def _batching() -> Row:
    batch = c.BATCH_SIZE
    chosen = _sel(batch.bucket, 'deployment=~"$deployment"')
    distribution = f"sum by (le) (increase({chosen}[$__range]))"
    return Row(
        "Batching",
        (
            Panel(
                "Mean batch size per deployment",
                "Requests per @serve.batch call: 1 means batching never had company.",
                (Target(mean(batch, "deployment"), "{{deployment}}"),),
            ),
            Panel(
                "Batch size p50 / p99 per deployment",
                "Against the deployment's max_batch_size (configs/*.yaml `batching`).",
                p50_p99(batch, "deployment", "{{deployment}}"),
            ),
            Panel(
                "Batch-size distribution: $deployment",
                "Batches per size bucket over the dashboard's time range.",
                (Target(distribution, "{{le}}", instant=True, format="heatmap"),),
                kind="bargauge",
                width=8,
                repeat="deployment",
            ),
        ),
    )


def _speech() -> Row:
    return Row(
        "Speech",
        (
            Panel(
                "Audio transcribed per second",
                "Seconds of audio per wall-clock second: how many times real time the ASR replicas run together.",
                (Target(sum_rate("model", c.ASR_AUDIO_SECONDS.series, MODEL), "{{model}}"),),
            ),
            Panel(
                "Real-time factor p50 / p99",
                "Transcription time / audio duration per request (below 1: faster than real time).",
                p50_p99(c.ASR_RTF, "model", "{{model}}", MODEL),
                thresholds=((None, "green"), (1, "red")),
            ),
        ),
    )


def _pipelines() -> Row:
    stage = c.PIPELINE_STAGE_SECONDS
    waterfalls = tuple(
        Panel(
            f"Stage waterfall (p50, stacked): {pipeline}",
            f"Median duration of each stage of {pipeline}, stacked in run order ({' -> '.join(stages)}): "
            "the top line is a typical run's length, each band what one stage adds.",
            tuple(
                Target(quantile(0.5, stage, "", f'pipeline="{pipeline}"', f'stage="{name}"'), name) for name in stages
            ),
            unit="s",
            stacked=True,
        )
        for pipeline, stages in c.PIPELINE_STAGES.items()
    )
    return Row(
        "Pipelines and retrieval",
        (
            *waterfalls,
            Panel(
                "Stage p99",
                "Slow tails per stage.",
                (Target(quantile(0.99, stage, "pipeline, stage"), "{{pipeline}} {{stage}}"),),
                unit="s",
            ),
            Panel(
                "Pipeline runs/s by outcome",
                "Finished runs per pipeline and outcome.",
                (Target(sum_rate("pipeline, outcome", c.PIPELINE_RUNS.series), "{{pipeline}} {{outcome}}"),),
                unit="reqps",
                stacked=True,
            ),
            Panel(
                "Vector store latency p50 / p99",
                "Qdrant operations (search, upsert, ...) as the VectorStore deployment sees them.",
                p50_p99(c.VECTOR_STORE_SECONDS, "operation", "{{operation}}"),
                unit="s",
            ),
            Panel(
                "Vector store operations/s",
                "Qdrant calls per operation.",
                (Target(sum_rate("operation", c.VECTOR_STORE_SECONDS.count), "{{operation}}"),),
                unit="ops",
            ),
        ),
    )


def _gpu() -> Row:
    used = f"max by (deployment, replica) ({c.GPU_MEMORY_USED.series})"
    budget = f"max by (deployment) ({c.GPU_MEMORY_BUDGET.series})"
    return Row(
        "GPU memory: use against the plan",
        (
            Panel(
                "GPU memory used per replica, and the deployment's budget",
                "What each replica holds on its card (solid) against its gpu_plan budget (dashed). "
                "Ray's num_gpus fractions are bookkeeping; the budgets are what makes the packing fit.",
                (Target(used, "{{deployment}} {{replica}}"), Target(budget, "{{deployment}} budget")),
                unit="bytes",
                dashed=".* budget$",
            ),
            Panel(
                "GPU memory used / budget",
                "Above 100%: the replica takes more than the plan gave it, and the card's neighbours may run out.",
                (Target(f"{used} / on (deployment) group_left () {budget}", "{{deployment}} {{replica}}"),),
                unit="percentunit",
                thresholds=((None, "green"), (0.9, "orange"), (1, "red")),
            ),
        ),
    )


def _replicas() -> Row:
    by = "application, deployment"
    return Row(
        "Replicas and queues (Ray Serve)",
        (
            Panel(
                "Healthy replicas per deployment",
                "Replicas passing check_health, from Serve's controller.",
                (Target(f"sum by ({by}) ({c.SERVE_REPLICA_HEALTHY.series})", "{{deployment}}"),),
            ),
            Panel(
                "Queued requests per deployment",
                "Waiting at callers (proxies, ingress and pipeline handles) for a replica slot: "
                "max_ongoing_requests is full. Growing for minutes: the autoscaler is at max_replicas or stuck.",
                (Target(f"sum by ({by}) ({c.SERVE_QUEUED.series})", "{{deployment}}"),),
            ),
            Panel(
                "Requests running per deployment",
                "Requests the replicas are processing (bounded by max_ongoing_requests per replica).",
                (Target(f"sum by ({by}) ({c.SERVE_PROCESSING.series})", "{{deployment}}"),),
            ),
            Panel(
                "Proxy responses/s by status",
                "At Serve's HTTP proxies: includes what never reached the ingress (503 when its queue is full).",
                (Target(sum_rate("status_code", c.SERVE_HTTP_REQUESTS.series, NOT_HEALTH_CHECKS), "{{status_code}}"),),
                unit="reqps",
                stacked=True,
            ),
            Panel(
                "Open HTTP requests at the proxies",
                "Connections each node's proxy holds (streams included).",
                (Target(f"sum by (node_ip_address) ({c.SERVE_ONGOING_HTTP.series})", "{{node_ip_address}}"),),
            ),
            Panel(
                "Loaded models",
                "One row per model a replica loaded: kind, version, engine and device as the deployment reports them.",
                (
                    Target(
                        f"max by (deployment, model, kind, version, engine, device) ({c.MODEL_INFO.series})",
                        instant=True,
                        format="table",
                    ),
                ),
                kind="table",
                extra={"transformations": [{"id": "organize", "options": {"excludeByName": HIDDEN_COLUMNS}}]},
            ),
        ),
    )


ROWS = (_overview, _golden_signals, _llm, _batching, _speech, _pipelines, batches_row, _gpu, _replicas)


def dashboard() -> dict:
    return dashboard_json(
        title="multimodel-serve",
        uid=UID,
        description=(
            "Generated by `python -m serve_app.tools.observability` from serve_app/tools/observability/ "
            "(metric catalogue: catalogue.py); edit there, not here."
        ),
        tags=("multimodel-serve", "ray-serve"),
        variables=(
            query_variable("model", "Model", f"label_values({c.MODEL_INFO.series}, model)"),
            query_variable("deployment", "Batching deployment", f"label_values({c.BATCH_SIZE.bucket}, deployment)"),
        ),
        rows=[build() for build in ROWS],
    )


def render() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"
