"""Map-reduce planning against a fake LLM handle (a test double, unit tests only)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from pipelines.video_summary import Summariser
from serve_app.config import VideoSummaryConfig
from serve_app.errors import InvalidRequest
from serve_app.protocol import ModelCard, VideoSummaryOptions


class _Remote:
    def __init__(self, fn):
        self._fn = fn

    async def remote(self, *args):
        return self._fn(*args)


def _count_words(text: str | list[str]) -> int | list[int]:
    # The LLM deployment's count_tokens contract: one text, or a list counted in one call.
    return [len(t.split()) for t in text] if isinstance(text, list) else len(text.split())


class FakeLLM:
    """Counts one token per word; answers every chat with a fixed short summary."""

    def __init__(self, max_model_len: int = 1024):
        self.prompts: list[str] = []
        self.card = _Remote(
            lambda: ModelCard(id="fake", kind="llm", engine="x", version="v", max_model_len=max_model_len)
        )
        self.count_tokens = _Remote(_count_words)
        self.chat = _Remote(self._chat)

    def _chat(self, request):
        self.prompts.append(request.messages[-1].text())
        return SimpleNamespace(choices=[SimpleNamespace(message=SimpleNamespace(content="short partial summary"))])


SEGMENTS = [" ".join(f"w{i}_{j}" for j in range(30)) for i in range(20)]  # 600 words


async def test_fitting_transcript_is_one_prompt_without_map_calls():
    llm = FakeLLM()
    summariser = Summariser(llm, VideoSummaryConfig(), VideoSummaryOptions())
    plan = await summariser.plan()
    prompt = await summariser.final_prompt(plan, SEGMENTS[:2])
    assert SEGMENTS[0] in prompt and llm.prompts == [] and summariser.chunks == 0


async def test_long_transcript_is_chunked_within_budget_then_combined():
    llm = FakeLLM()
    summariser = Summariser(llm, VideoSummaryConfig(), VideoSummaryOptions(chunk_tokens=100))
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
        FakeLLM(max_model_len=400), VideoSummaryConfig(max_summary_tokens=100), VideoSummaryOptions()
    )
    plan = await summariser.plan()
    assert plan.chunk_tokens < 400 - 100 and plan.llm_model == "fake"
    prompt = await summariser.final_prompt(plan, SEGMENTS)
    assert summariser.chunks > 1 and "short partial summary" in prompt


async def test_context_too_small_for_the_summary_is_400():
    summariser = Summariser(
        FakeLLM(max_model_len=300), VideoSummaryConfig(max_summary_tokens=290), VideoSummaryOptions()
    )
    with pytest.raises(InvalidRequest) as info:
        await summariser.plan()
    assert info.value.param == "max_summary_tokens"
