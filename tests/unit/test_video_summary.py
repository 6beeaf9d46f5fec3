"""Map-reduce planning against a fake LLM handle (a test double, unit tests only)."""

from __future__ import annotations

import pytest

from pipelines.video_summary import Summariser
from serve_app.config import VideoSummaryConfig
from serve_app.errors import InvalidRequest
from serve_app.protocol import VideoSummaryOptions
from tests.fakes import FakeHandle, FakeLLM

SEGMENTS = [" ".join(f"w{i}_{j}" for j in range(30)) for i in range(20)]  # 600 words


async def test_fitting_transcript_is_one_prompt_without_map_calls():
    llm = FakeLLM()
    summariser = Summariser(FakeHandle(llm), VideoSummaryConfig(), VideoSummaryOptions())
    plan = await summariser.plan()
    prompt = await summariser.final_prompt(plan, SEGMENTS[:2])
    assert SEGMENTS[0] in prompt and llm.prompts == [] and summariser.chunks == 0


async def test_long_transcript_is_chunked_within_budget_then_combined():
    llm = FakeLLM()
    summariser = Summariser(FakeHandle(llm), VideoSummaryConfig(), VideoSummaryOptions(chunk_tokens=100))
    plan = await summariser.plan()
    prompt = await summariser.final_prompt(plan, SEGMENTS)
    assert summariser.chunks == len(llm.prompts) == summariser.calls >= 6
    transcript_words = [w for p in llm.prompts for w in p.split() if w.startswith("w")]
    assert transcript_words == " ".join(SEGMENTS).split()  # every word once, in order
    for p in llm.prompts:
        assert len([w for w in p.split() if w.startswith("w")]) <= 100
    assert prompt.count("short partial summary") == summariser.chunks


async def test_chunk_budget_follows_the_llm_context():
    summariser = Summariser(
        FakeHandle(FakeLLM(max_model_len=400)), VideoSummaryConfig(max_summary_tokens=100), VideoSummaryOptions()
    )
    plan = await summariser.plan()
    assert plan.chunk_tokens < 400 - 100 and plan.llm_model == "fake"
    prompt = await summariser.final_prompt(plan, SEGMENTS)
    assert summariser.chunks > 1 and "short partial summary" in prompt


async def test_context_too_small_for_the_summary_is_400():
    summariser = Summariser(
        FakeHandle(FakeLLM(max_model_len=300)), VideoSummaryConfig(max_summary_tokens=290), VideoSummaryOptions()
    )
    with pytest.raises(InvalidRequest) as info:
        await summariser.plan()
    assert info.value.param == "max_summary_tokens"


def test_a_configured_alias_leaves_a_direct_caller_on_the_llm_the_pipeline_was_bound_to():
    from pipelines.video_summary import VideoSummaryPipeline
    from serve_app.common.model_registry import ModelRegistry

    bound = FakeHandle(FakeLLM(name="small"))
    models = ModelRegistry({"llm": {"small": bound, "large": FakeHandle(FakeLLM(name="large"))}})
    aliased = VideoSummaryPipeline.func_or_class(models, VideoSummaryConfig(llm_model="assistant"), "asr", "small")
    assert aliased._config.llm_model is None
    assert aliased._summariser(VideoSummaryOptions())._llm is bound
    named = VideoSummaryPipeline.func_or_class(models, VideoSummaryConfig(llm_model="large"), "asr", "large")
    assert named._config.llm_model == "large"


async def test_with_speakers_the_summary_is_asked_who_said_what():
    from pipelines.video_summary import summarize_video
    from tests.fakes import FakeASR, FakeDiarizer

    llm, asr, diarizer = FakeLLM(), FakeASR(), FakeDiarizer()
    summariser = Summariser(FakeHandle(llm), VideoSummaryConfig(), VideoSummaryOptions(diarize=True))
    options = VideoSummaryOptions(diarize=True, num_speakers=2)
    result = await summarize_video(FakeHandle(asr), FakeHandle(diarizer), summariser, b"media", options)
    assert result.speakers == ["SPEAKER_00", "SPEAKER_01"] and result.transcript == "SPEAKER_00: 5 bytes"
    assert "SPEAKER_00: 5 bytes" in llm.prompts[-1] and result.srt.startswith(
        "1\n00:00:00,000 --> 00:00:01,000\nSPEAKER_00:"
    )
    assert diarizer.options[0].num_speakers == 2 and asr.options[0].diarize is False


async def test_without_speakers_nothing_changes_and_no_diarizer_is_needed():
    from pipelines.video_summary import summarize_video
    from tests.fakes import FakeASR

    llm, asr = FakeLLM(), FakeASR()
    summariser = Summariser(FakeHandle(llm), VideoSummaryConfig(), VideoSummaryOptions())
    result = await summarize_video(FakeHandle(asr), None, summariser, b"media", VideoSummaryOptions())
    assert "speakers" not in result.model_dump() and "transcript" not in result.model_dump()
    assert "5 bytes" in llm.prompts[-1] and "SPEAKER" not in llm.prompts[-1]
    with pytest.raises(InvalidRequest) as info:
        await summarize_video(FakeHandle(asr), None, summariser, b"media", VideoSummaryOptions(diarize=True))
    assert info.value.param == "diarize"
