"""The app's metrics as an operator sees them: a real Prometheus scraping Ray's per-node exporter.

Known traffic goes to the session app (chats plain and streamed, one cancelled, a 400, a 404,
embeddings, one run of each pipeline); Prometheus is then asked in PromQL for the exact counter
deltas per route, model and status, the declared histogram buckets, a TTFT count equal to the
streamed completions, and one stage sample per stage per pipeline run. A second test checks that
every metric the shipped dashboard reads is in a live scrape.
"""

from __future__ import annotations

import time
from collections import Counter

import httpx
import pytest

from serve_app.common import metrics
from serve_app.tools.observability import catalogue as c
from tests import speech_media
from tests.conftest import LOCAL_MODEL, SESSION
from tests.images import b64, png
from tests.observability import dashboard_metric_names, scrape_metric_names
from tests.prometheus_harness import Prometheus
from tests.serve_harness import REPO

pytestmark = pytest.mark.slow

CHAT = "/v1/chat/completions"
EMBEDDINGS = "/v1/embeddings"
MINILM = "all-minilm-l6-v2"
HELLO = {"model": LOCAL_MODEL, "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8, "seed": 1}
BY_STATUS = ("route", "model", "status")
# Recorded only where the replica sees a GPU (NVML): a CPU host never exports them.
GPU_ONLY = {c.GPU_MEMORY_USED.exported, c.GPU_MEMORY_BUDGET.exported}


@pytest.fixture(scope="module")
def prometheus(local_app, tmp_path_factory):
    prom = Prometheus([f"127.0.0.1:{SESSION.metrics_port}"], tmp_path_factory.mktemp("prometheus"))
    try:
        prom.wait_until("Prometheus scraping the Ray exporter", prom.targets_up)
        yield prom
    finally:
        prom.stop()


def _settled(prom: Prometheus, promql: str, by: tuple[str, ...], quiet_s: float = 4.0) -> dict:
    """The vector once it has not changed for `quiet_s` (longer than an export plus a scrape):
    everything sent before is in it."""
    last, since = prom.values(promql, by), time.monotonic()
    while time.monotonic() - since < quiet_s:
        time.sleep(0.5)
        now = prom.values(promql, by)
        if now != last:
            last, since = now, time.monotonic()
    return last


def _delta(after: dict, before: dict) -> Counter:
    return Counter({k: round(v - before.get(k, 0.0), 6) for k, v in after.items() if v != before.get(k, 0.0)})


def _wait_for_delta(prom: Prometheus, promql: str, by: tuple[str, ...], before: dict, expected: Counter) -> None:
    deadline = time.monotonic() + 60
    while _delta(prom.values(promql, by), before) != expected and time.monotonic() < deadline:
        time.sleep(0.5)
    # Exact, not at least: once it has all arrived, nothing more does.
    assert _delta(_settled(prom, promql, by), before) == expected, promql


def _stream_chat(http: httpx.Client, cancel_after_first: bool = False) -> None:
    with http.stream("POST", CHAT, json={**HELLO, "stream": True, "max_tokens": 64}) as reply:
        assert reply.status_code == 200
        for line in reply.iter_lines():
            if cancel_after_first and '"content":"' in line and '"content":""' not in line:
                return  # leaving the block closes the connection mid-stream: the client went away
            if line == "data: [DONE]":
                return


def test_counters_ttft_and_histogram_buckets(prometheus, local_app):
    requests = f"sum by (route, model, status) ({c.HTTP_REQUESTS.series})"
    ttft = f'sum by (model) ({c.LLM_TTFT.count}{{stream="true"}})'
    before = _settled(prometheus, requests, BY_STATUS)
    ttft_before = _settled(prometheus, ttft, ("model",))

    with httpx.Client(base_url=local_app, timeout=120) as http:
        for _ in range(3):
            assert http.post(CHAT, json=HELLO).status_code == 200
        assert http.post(CHAT, json={**HELLO, "temperature": 9}).status_code == 400
        assert http.post(CHAT, json={**HELLO, "max_tokens": 5000}).status_code == 400  # over the context
        assert http.post(CHAT, json={**HELLO, "model": "no-such-model"}).status_code == 404
        for _ in range(2):
            assert http.post(EMBEDDINGS, json={"model": MINILM, "input": ["a", "b"]}).status_code == 200
        _stream_chat(http)
        _stream_chat(http)
        _stream_chat(http, cancel_after_first=True)

    expected = Counter(
        {
            (CHAT, LOCAL_MODEL, "200"): 3 + 3,  # the cancelled stream had answered 200 before it was cut
            (CHAT, "none", "400"): 1,  # refused by the schema before a model was resolved
            (CHAT, LOCAL_MODEL, "400"): 1,  # refused by the model: context_length_exceeded
            (CHAT, "unknown", "404"): 1,  # a name nobody serves never becomes a label value
            (EMBEDDINGS, MINILM, "200"): 2,
        }
    )
    _wait_for_delta(prometheus, requests, BY_STATUS, before, expected)
    _wait_for_delta(prometheus, ttft, ("model",), ttft_before, Counter({(LOCAL_MODEL,): 3}))

    declared = {
        c.HTTP_DURATION: metrics.LATENCY_BUCKETS,
        c.LLM_TTFT: metrics.TTFT_BUCKETS,
        c.LLM_ITL: metrics.ITL_BUCKETS,
    }
    for metric, buckets in declared.items():
        exported = {r["metric"]["le"] for r in prometheus.query(f"count by (le) ({metric.bucket})")}
        assert {float(le) for le in exported} == {*map(float, buckets), float("inf")}, metric.name


@pytest.fixture(scope="module")
def pipeline_runs(prometheus, local_app) -> dict:
    """One run of each pipeline (so every model serves once); yields the stage counts before them."""
    stages = f"sum by (pipeline, stage) ({c.PIPELINE_STAGE_SECONDS.count})"
    before = _settled(prometheus, stages, ("pipeline", "stage"))
    video = speech_media.encode(speech_media.speech(4.0), "mp4", video=True)
    with httpx.Client(base_url=local_app, timeout=300) as http:
        collection = f"metrics-{time.monotonic_ns()}"
        assert http.post("/v1/collections", json={"name": collection, "model": "tiny-clip"}).status_code == 200
        item = {"id": "square", "image": b64(png("square", "red"))}
        assert http.post(f"/v1/collections/{collection}/items", json={"items": [item]}).status_code == 200
        reply = http.post(
            "/v1/pipelines/image-rag",
            files={"image": ("s.png", png("square", "red"), "image/png")},
            data={"collection": collection, "question": "What is it?", "max_tokens": "4"},
        )
        assert reply.status_code == 200, reply.text
        reply = http.post(
            "/v1/pipelines/video-summary",
            data={"language": "en", "max_summary_tokens": "8"},
            files={"file": ("talk.mp4", video, "video/mp4")},
        )
        assert reply.status_code == 200, reply.text
        assert http.delete(f"/v1/collections/{collection}").status_code == 200
        assert http.post(EMBEDDINGS, json={"model": MINILM, "input": "one more"}).status_code == 200
    return {"query": stages, "before": before}


def test_one_stage_sample_per_stage_per_pipeline_run(prometheus, pipeline_runs):
    expected = Counter({(p, s): 1 for p, names in c.PIPELINE_STAGES.items() for s in names})
    _wait_for_delta(prometheus, pipeline_runs["query"], ("pipeline", "stage"), pipeline_runs["before"], expected)


def test_every_metric_the_dashboard_reads_is_in_a_live_scrape(prometheus, pipeline_runs):
    # Each served model and both pipelines have been used by now (pipeline_runs), so all are exported.
    scraped = scrape_metric_names(httpx.get(f"http://127.0.0.1:{SESSION.metrics_port}/metrics", timeout=30).text)
    wanted = dashboard_metric_names(REPO / "deploy" / "grafana" / "multimodel-serve.json")
    assert wanted - scraped - GPU_ONLY == set()
