"""Pipeline metrics over fake handles: one sample per stage per completed run, and every run counted by outcome."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from pipelines.image_rag import ImageRAG, RAGModels
from pipelines.video_summary import VideoSummaryPipeline
from serve_app.common import metrics
from serve_app.common.images import ImageLimits
from serve_app.common.model_registry import ModelRegistry
from serve_app.config import ImageRAGConfig, VideoSummaryConfig
from serve_app.protocol import ImageRAGRequest
from tests.fakes import FakeASR, FakeHandle, FakeLLM, RecordedMetrics
from tests.images import png


@pytest.fixture()
def recorded(monkeypatch) -> RecordedMetrics:
    return RecordedMetrics(monkeypatch)


def stages(recorded: RecordedMetrics, pipeline: str) -> list[str]:
    return [tags["stage"] for _, tags in recorded.tagged("mms_pipeline_stage_seconds") if tags["pipeline"] == pipeline]


def outcomes(recorded: RecordedMetrics, pipeline: str) -> list[str]:
    return [tags["outcome"] for _, tags in recorded.tagged("mms_pipeline_runs") if tags["pipeline"] == pipeline]


def video_summary(asr: object | None = None) -> VideoSummaryPipeline:
    models = ModelRegistry({"asr": {"asr": asr or FakeHandle(FakeASR())}, "llm": {"m": FakeHandle(FakeLLM())}})
    return VideoSummaryPipeline.func_or_class(models, VideoSummaryConfig(), "asr", "m")


def image_rag(llm: FakeLLM | None = None) -> ImageRAG:
    models = ModelRegistry(
        {
            "detector": {"d": FakeHandle.of(detect=lambda _request, _decoded: SimpleNamespace(detections=[]))},
            "embedding": {
                "e": FakeHandle.of(embed_inputs=lambda images: [(np.zeros(4, dtype=np.float32), 1) for _ in images])
            },
            "llm": {"m": FakeHandle(llm or FakeLLM("an answer"))},
        }
    )
    store = FakeHandle.of(search_vectors=lambda *_args, **_kwargs: [[]])
    limits = ImageLimits(max_bytes=1 << 20, max_pixels=1 << 20)
    return ImageRAG.func_or_class(
        models, store, RAGModels(detector="d", embedder="e", llm="m"), ImageRAGConfig(), limits
    )


async def test_a_video_summary_records_each_stage_once(recorded):
    pipeline = video_summary()
    await pipeline.summarize(b"media", {})
    [event async for event in pipeline.summarize_stream(b"media", {})]
    once = ["decode", "transcribe", "align", "summarise"]
    assert stages(recorded, "video_summary") == once + once
    assert outcomes(recorded, "video_summary") == ["ok", "ok"]


async def test_a_failed_video_summary_is_an_error_run_without_stages(recorded):
    broken = FakeHandle.of("ASR", transcribe=lambda media, options: 1 / 0, card=FakeASR().card)
    with pytest.raises(ZeroDivisionError):
        await video_summary(broken).summarize(b"x", {})
    assert stages(recorded, "video_summary") == []
    assert outcomes(recorded, "video_summary") == ["error"]


async def test_an_image_rag_run_records_each_stage_once(recorded):
    pipeline = image_rag()
    reply = await pipeline.run(ImageRAGRequest(image=png(), collection="kb"))
    [event async for event in pipeline.stream(ImageRAGRequest(image=png(), collection="kb"))]
    once = ["detect", "embed", "search", "answer"]
    assert stages(recorded, "image_rag") == once + once
    assert outcomes(recorded, "image_rag") == ["ok", "ok"]
    # The exported seconds are the reply's own timings.
    detect, embed, search, answer = recorded.samples("mms_pipeline_stage_seconds", pipeline="image_rag")[:4]
    timings = reply.timings
    assert [detect, embed, search, answer] == pytest.approx(
        [t / 1000 for t in (timings.detect_ms, timings.embed_ms, timings.retrieve_ms, timings.generate_ms)]
    )


async def test_an_image_rag_stream_the_client_left_is_a_cancelled_run(recorded):
    events = image_rag().stream(ImageRAGRequest(image=png(), collection="kb"))
    await anext(events)  # the context event
    await events.aclose()
    assert stages(recorded, "image_rag") == []
    assert outcomes(recorded, "image_rag") == [metrics.CANCELLED]


async def test_a_bad_image_rag_request_is_an_error_run(recorded):
    with pytest.raises(Exception, match="collection"):
        await image_rag().run(ImageRAGRequest(image=png()))  # no collection, none configured
    assert outcomes(recorded, "image_rag") == ["error"]
