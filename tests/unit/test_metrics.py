"""serve_app.common.metrics: the catalogue's shape, bounded labels, and recording that can never fail a request."""

from __future__ import annotations

import asyncio
import logging

import pytest

from serve_app.common import metrics
from tests.fakes import RecordedMetrics

# Ray adds these to every series recorded in a replica and refuses them as our own tag keys.
SERVE_TAGS = {"deployment", "replica", "application"}


@pytest.fixture()
def recorded(monkeypatch) -> RecordedMetrics:
    return RecordedMetrics(monkeypatch)


def test_the_catalogue_names_each_metric_once_under_the_mms_prefix():
    names = [m.name for m in metrics.CATALOGUE]
    assert len(names) == len(set(names)) == 19
    assert all(name.startswith("mms_") for name in names)
    assert not any(SERVE_TAGS & set(m.tag_keys) for m in metrics.CATALOGUE)


def test_histograms_have_their_named_sorted_buckets():
    histograms = {m.name: m.buckets for m in metrics.CATALOGUE if m.kind == "histogram"}
    assert histograms["mms_batch_size"] == (1, 2, 4, 8, 16, 32, 64, 128)
    assert histograms["mms_http_request_duration_seconds"] == metrics.LATENCY_BUCKETS
    assert histograms["mms_llm_time_to_first_token_seconds"] == metrics.TTFT_BUCKETS
    assert histograms["mms_llm_inter_token_latency_seconds"] == metrics.ITL_BUCKETS
    assert histograms["mms_asr_real_time_factor"] == metrics.RTF_BUCKETS
    assert (metrics.LATENCY_BUCKETS[0], metrics.LATENCY_BUCKETS[-1]) == (0.005, 60.0)
    assert (metrics.TTFT_BUCKETS[0], metrics.TTFT_BUCKETS[-1]) == (0.01, 30.0)
    assert (metrics.ITL_BUCKETS[0], metrics.ITL_BUCKETS[-1]) == (0.001, 2.0)
    assert (metrics.RTF_BUCKETS[0], metrics.RTF_BUCKETS[-1]) == (0.01, 10.0)
    for buckets in histograms.values():
        assert list(buckets) == sorted(set(buckets))


def test_a_label_outside_its_closed_set_is_never_exported_as_is():
    known = frozenset({"tiny-qwen2", "whisper-1"})
    assert metrics.bounded("whisper-1", known) == "whisper-1"
    assert metrics.bounded("gpt-4o; DROP TABLE", known) == "unknown"
    assert metrics.bounded(None, known) == "none"


def test_recording_without_ray_is_a_no_op_that_raises_nothing():
    # The real Ray metric objects, outside any Ray worker: what tests/http and notebooks hit.
    metric = metrics.Metric("histogram", "mms_test_outside_ray", "test", ("a",), (1.0, 2.0))
    metric.observe(0.5, {"a": "b"})
    metrics.Metric("counter", "mms_test_counter_outside_ray", "test").inc()
    assert metric._metric is not None and not metric._warned


def test_a_sample_that_cannot_be_recorded_is_dropped_and_logged_once(caplog):
    metric = metrics.Metric("counter", "mms_test_broken", "test", ("a",))
    with caplog.at_level(logging.WARNING, logger="ray.serve"):
        metric.inc(1, {"wrong": "tag"})  # Ray refuses an undeclared tag: the request must not notice
        metric.inc(1, {"wrong": "tag"})
        metric.inc(1, {"a": "fine"})
    assert [r.getMessage() for r in caplog.records] == [
        "metric mms_test_broken failed to record (later failures are not logged)"
    ]


def test_a_zero_increment_records_nothing(recorded):
    metrics.LLM_COMPLETION_TOKENS.inc(0, {"model": "m"})
    assert recorded.samples("mms_llm_completion_tokens") == []


def test_stages_are_one_sample_each_and_only_known_ones(recorded):
    metrics.observe_stages("image_rag", {"detect": 0.1, "embed": 0.2, "search": 0.01, "answer": 1.5})
    assert recorded.tagged("mms_pipeline_stage_seconds") == [
        (0.1, {"pipeline": "image_rag", "stage": "detect"}),
        (0.2, {"pipeline": "image_rag", "stage": "embed"}),
        (0.01, {"pipeline": "image_rag", "stage": "search"}),
        (1.5, {"pipeline": "image_rag", "stage": "answer"}),
    ]
    with pytest.raises(ValueError, match="no stage"):
        metrics.observe_stages("image_rag", {"transcribe": 1.0})


async def test_a_pipeline_run_counts_by_how_it_ended(recorded):
    with metrics.pipeline_run("video_summary"):
        pass
    with pytest.raises(RuntimeError), metrics.pipeline_run("video_summary"):
        raise RuntimeError("asr died")

    async def cancelled():
        with metrics.pipeline_run("video_summary"):
            await asyncio.sleep(10)

    task = asyncio.create_task(cancelled())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [tags["outcome"] for _, tags in recorded.tagged("mms_pipeline_runs")] == ["ok", "error", "cancelled"]


async def test_a_stream_closed_by_its_consumer_is_a_cancelled_run(recorded):
    async def events():
        with metrics.pipeline_run("image_rag"):
            yield 1
            yield 2

    stream = events()
    assert await anext(stream) == 1
    await stream.aclose()  # the client went away: Serve closes the generator
    assert recorded.samples("mms_pipeline_runs", outcome="cancelled") == [1]


def test_gauges_are_set_again_at_their_last_values(recorded, monkeypatch):
    # Ray exports a gauge only in report intervals where it was set: a replica re-sets them all.
    keeper = metrics._GaugeKeeper()
    monkeypatch.setattr(metrics, "_gauges", keeper)
    metrics.LLM_RUNNING.set(3, {"model": "a"})
    metrics.LLM_RUNNING.set(0, {"model": "a"})
    metrics.LLM_RUNNING.set(1, {"model": "b"})
    metrics.GPU_MEMORY_BUDGET.set(2.0)
    keeper.refresh()
    assert recorded.tagged("mms_llm_requests_running")[3:] == [(0, {"model": "a"}), (1, {"model": "b"})]
    assert recorded.samples("mms_gpu_memory_budget_bytes") == [2.0, 2.0]
    assert keeper.refreshing is False, "no refresher thread outside a Ray worker"
