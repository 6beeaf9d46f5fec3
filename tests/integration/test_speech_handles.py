"""Notebook-style calls: the VideoSummary and ASR deployment handles, including map-reduce over a long input."""

from __future__ import annotations

import pytest
import srt
from ray import serve

from serve_app.errors import InvalidRequest, unwrap
from serve_app.protocol import Transcript, VideoSummary, VideoSummaryEvent
from tests import speech_media

pytestmark = pytest.mark.usefixtures("local_app")


@pytest.fixture(scope="module")
def clip() -> bytes:
    return speech_media.encode(speech_media.speech(6.0), "mp4", video=True)


async def llm_completed() -> int:
    return (await serve.get_deployment_handle("LLM", app_name="default").stats.remote())["completed"]


async def test_pipeline_handle_with_bytes_and_with_a_path(clip, tmp_path):
    pipeline = serve.get_deployment_handle("VideoSummary", app_name="default")
    before = await llm_completed()
    result = await pipeline.summarize.remote(clip, {"language": "en", "max_summary_tokens": 8})
    assert isinstance(result, VideoSummary)
    assert result.summary.strip() and result.summary_model == "tiny-qwen2"
    # The summary came from the LLM deployment: its replica counted the generation.
    assert await llm_completed() - before == result.timings.llm_calls == 1
    assert list(srt.parse(result.srt))

    path = tmp_path / "clip.mp4"
    path.write_bytes(clip)
    from_path = await pipeline.summarize.remote(str(path), {"language": "en", "max_summary_tokens": 8})
    assert [s.text for s in from_path.segments] == [s.text for s in result.segments]


async def test_pipeline_handle_streams_events_in_order(clip):
    pipeline = serve.get_deployment_handle("VideoSummary", app_name="default")
    events = [
        e
        async for e in pipeline.options(stream=True).summarize_stream.remote(
            clip, {"language": "en", "max_summary_tokens": 8}
        )
    ]
    assert all(isinstance(e, VideoSummaryEvent) for e in events)
    assert events[0].type == "transcript" and events[0].segments
    assert events[-1].type == "done" and events[-1].srt
    assert all(e.type == "summary.delta" for e in events[1:-1]) and len(events) > 2


async def test_three_minutes_go_through_map_reduce():
    audio = speech_media.encode(speech_media.speech(180.0), "mp3")
    pipeline = serve.get_deployment_handle("VideoSummary", app_name="default")
    before = await llm_completed()
    # Small chunks, so the transcript of the tiny model cannot fit one prompt.
    result = await pipeline.summarize.remote(audio, {"language": "en", "max_summary_tokens": 8, "chunk_tokens": 64})
    assert result.duration == pytest.approx(180.0, abs=0.5)
    assert result.timings.chunks > 1
    assert result.timings.llm_calls > result.timings.chunks  # map calls, then at least one combine
    assert await llm_completed() - before == result.timings.llm_calls
    assert result.summary.strip()
    cues = list(srt.parse(result.srt))
    assert cues[-1].end.total_seconds() <= result.duration


async def test_asr_handle_and_its_errors(clip):
    asr = serve.get_deployment_handle("ASR", app_name="default")
    transcript = await asr.transcribe.remote(clip, {"language": "en", "subtitles": "vtt"})
    assert isinstance(transcript, Transcript)
    assert transcript.aligned and transcript.subtitles.startswith("WEBVTT")
    with pytest.raises(Exception) as info:
        await asr.transcribe.remote(b"not media", {})
    assert isinstance(unwrap(info.value), InvalidRequest)
    assert (await asr.card.remote()).kind == "asr"
