"""The OpenAI API over HTTP, driven by the official `openai` SDK (and raw HTTP for bad input)."""

from __future__ import annotations

import asyncio
import json

import httpx
import openai
import pytest
from transformers import AutoTokenizer

from tests import serve_harness
from tests.conftest import LOCAL_MODEL

CHAT = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name a colour."}]


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(serve_harness.REPO / "models" / LOCAL_MODEL / "v1")


def test_list_models_shows_engine_and_version(openai_client):
    models = openai_client.models.list().data
    card = next(m for m in models if m.id == LOCAL_MODEL)
    extra = card.model_extra
    assert extra["kind"] == "llm"
    assert extra["engine"] == "transformers"
    assert extra["version"] == f"{LOCAL_MODEL}/v1"


def test_chat_completion_usage_matches_the_tokenizer(openai_client, tokenizer):
    reply = openai_client.chat.completions.create(model=LOCAL_MODEL, messages=CHAT, max_tokens=16, seed=1)
    prompt = tokenizer.apply_chat_template(CHAT, add_generation_prompt=True, tokenize=False)
    assert reply.object == "chat.completion"
    assert reply.usage.prompt_tokens == len(tokenizer.encode(prompt, add_special_tokens=False))
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    choice = reply.choices[0]
    assert choice.message.role == "assistant"
    if choice.finish_reason == "length":
        assert reply.usage.completion_tokens == 16
    else:
        assert choice.finish_reason == "stop" and reply.usage.completion_tokens <= 16


def test_chat_is_reproducible_with_a_seed(openai_client):
    first, second = (
        openai_client.chat.completions.create(model=LOCAL_MODEL, messages=CHAT, max_tokens=16, seed=42)
        for _ in range(2)
    )
    assert first.choices[0].message.content == second.choices[0].message.content


def test_chat_stream_arrives_in_chunks_and_matches_the_plain_answer(openai_client):
    plain = openai_client.chat.completions.create(model=LOCAL_MODEL, messages=CHAT, max_tokens=24, seed=5)
    stream = openai_client.chat.completions.create(
        model=LOCAL_MODEL,
        messages=CHAT,
        max_tokens=24,
        seed=5,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    content = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content) > 1, "the answer came in one piece, not streamed"
    assert "".join(content) == plain.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == plain.usage.completion_tokens
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [plain.choices[0].finish_reason]


def test_raw_sse_events_are_incremental_and_end_with_done(local_app):
    body = {"model": LOCAL_MODEL, "messages": CHAT, "max_tokens": 32, "stream": True, "seed": 9}
    events: list[str] = []
    with httpx.stream("POST", f"{local_app}/v1/chat/completions", json=body, timeout=60) as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/event-stream")
        for line in reply.iter_lines():
            if line:
                assert line.startswith("data: ")
                events.append(line[len("data: ") :])
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len(chunks) >= 3


def test_completions_plain_streamed_and_usage(openai_client, tokenizer):
    prompt = "The quick brown fox"
    plain = openai_client.completions.create(model=LOCAL_MODEL, prompt=prompt, max_tokens=10, seed=3)
    assert plain.object == "text_completion"
    assert plain.usage.prompt_tokens == len(tokenizer.encode(prompt))
    streamed = list(
        openai_client.completions.create(model=LOCAL_MODEL, prompt=prompt, max_tokens=10, seed=3, stream=True)
    )
    assert "".join(c.choices[0].text for c in streamed if c.choices) == plain.choices[0].text
    echoed = openai_client.completions.create(model=LOCAL_MODEL, prompt=prompt, max_tokens=4, echo=True, seed=3)
    assert echoed.choices[0].text.startswith(prompt)


def test_stop_string_truncates_the_answer(openai_client):
    reference = (
        openai_client.completions.create(model=LOCAL_MODEL, prompt="One two three", max_tokens=30, temperature=0)
        .choices[0]
        .text
    )
    if len(reference) < 6:
        pytest.skip("greedy output too short to pick a stop string from")
    stop = reference[3:6]
    cut = openai_client.completions.create(
        model=LOCAL_MODEL, prompt="One two three", max_tokens=30, temperature=0, stop=[stop]
    )
    assert cut.choices[0].finish_reason == "stop"
    assert cut.choices[0].text == reference[: reference.index(stop)]


async def test_eight_concurrent_requests_all_succeed(local_app):
    client = openai.AsyncOpenAI(base_url=f"{local_app}/v1", api_key="unused", max_retries=0, timeout=120)
    replies = await asyncio.gather(
        *(client.chat.completions.create(model=LOCAL_MODEL, messages=CHAT, max_tokens=16, seed=i) for i in range(8))
    )
    assert all(r.choices[0].finish_reason in ("stop", "length") for r in replies)
    # Same seed alone and under load: concurrent requests do not disturb each other.
    alone = await client.chat.completions.create(model=LOCAL_MODEL, messages=CHAT, max_tokens=16, seed=3)
    assert alone.choices[0].message.content == replies[3].choices[0].message.content
