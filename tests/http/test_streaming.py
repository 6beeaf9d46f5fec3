"""Streams over HTTP: OpenAI's SSE framing from the real routes, and a failure after the first event.

sse_response itself (usage only where present, a failure before the first chunk) is unit-tested
in tests/unit/test_sse.py.
"""

from __future__ import annotations

import json

import openai
import pytest

from serve_app.errors import Overloaded
from serve_app.protocol import VideoSummaryEvent
from tests.fakes import FakeHandle, FakeLLM
from tests.http.support import LLM

CHAT = {"model": LLM, "messages": [{"role": "user", "content": "hi"}], "stream": True}


def events(reply) -> list[str]:
    """The payloads of a text/event-stream body, checking each is one `data:` line and a blank line."""
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/event-stream")
    frames = reply.text.split("\n\n")
    assert frames[-1] == "", "the body ends with a complete event"
    assert all(f.startswith("data: ") and "\n" not in f for f in frames[:-1]), frames
    return [f.removeprefix("data: ") for f in frames[:-1]]


@pytest.fixture()
def failing(serve_ingress, backends):
    """A client whose LLM stream sends one word, then raises `failure`."""

    def start(failure: Exception):
        llm = FakeLLM("one two three", name=LLM, fail_after=1, failure=failure)
        return serve_ingress({**backends["models"], "llm": {LLM: FakeHandle(llm, name="LLM")}})

    return start


def test_a_streamed_chat_is_data_events_ending_in_done(client, llm):
    reply = client.post("/v1/chat/completions", json={**CHAT, "stream_options": {"include_usage": True}})
    assert reply.headers["cache-control"] == "no-cache"
    *chunks, done = events(reply)
    assert done == "[DONE]"
    chunks = [json.loads(c) for c in chunks]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == llm.reply
    assert [c["usage"]["completion_tokens"] for c in chunks if "usage" in c] == [3], "only the last has usage"


def test_a_streamed_completion_is_data_events_ending_in_done(client, llm):
    *chunks, done = events(client.post("/v1/completions", json={"model": LLM, "prompt": "hi", "stream": True}))
    assert done == "[DONE]"
    assert "".join(json.loads(c)["choices"][0]["text"] for c in chunks) == llm.reply


def test_the_openai_sdk_reads_the_stream(client, llm):
    sdk = openai.OpenAI(http_client=client, base_url="http://testserver/v1", api_key="unused", max_retries=0)
    stream = sdk.chat.completions.create(model=LLM, messages=CHAT["messages"], stream=True)
    assert "".join(chunk.choices[0].delta.content or "" for chunk in stream) == llm.reply


def test_a_failure_after_the_stream_started_is_an_error_event_then_done(failing):
    reply = failing(RuntimeError("engine died: /internal/path")).post("/v1/chat/completions", json=CHAT)
    *chunks, error, done = events(reply)
    assert json.loads(chunks[-1])["choices"][0]["delta"]["content"] == "one"
    detail = json.loads(error)["error"]
    assert set(detail) == {"message", "type", "param", "code"}
    assert detail["type"] == "server_error" and "/internal" not in detail["message"]
    assert done == "[DONE]"


def test_an_api_error_mid_stream_keeps_its_code(failing):
    reply = failing(Overloaded("the engine is shedding load")).post("/v1/chat/completions", json=CHAT)
    *_, error, done = events(reply)
    assert json.loads(error)["error"]["code"] == "server_overloaded"
    assert done == "[DONE]"


def test_the_video_summary_streams_its_events_from_a_multipart_upload(serve_ingress, backends):
    async def summarize_stream(media, options):
        yield VideoSummaryEvent(type="transcript", text=f"{len(media)} bytes", language=options.language)
        yield VideoSummaryEvent(type="summary.delta", delta="short")
        yield VideoSummaryEvent(type="done", summary="short")

    pipeline = FakeHandle.of("VideoSummary", summarize_stream=summarize_stream)
    http = serve_ingress(backends["models"], {"video_summary": pipeline})
    reply = http.post(
        "/v1/pipelines/video-summary", data={"stream": "true", "language": "de"}, files={"file": ("a.mp4", b"12345")}
    )
    *payloads, done = events(reply)
    first, *_ = parsed = [json.loads(p) for p in payloads]
    assert [e["type"] for e in parsed] == ["transcript", "summary.delta", "done"]
    assert first == {"type": "transcript", "text": "5 bytes", "language": "de"}, "unset fields are left out"
    assert done == "[DONE]"
