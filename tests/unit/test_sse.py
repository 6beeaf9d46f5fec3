"""SSE framing, including a failure after the stream has started."""

from __future__ import annotations

import json

import pytest

from serve_app.errors import ContextLengthExceeded, ServiceUnavailable
from serve_app.http.sse import sse_response
from serve_app.protocol import Completion, CompletionChoice, Usage


def chunk(text: str, usage: Usage | None = None) -> Completion:
    return Completion(id="cmpl-1", created=0, model="m", choices=[CompletionChoice(text=text)], usage=usage)


async def body_events(response) -> list[str]:
    lines = [part async for part in response.body_iterator]
    assert all(line.startswith("data: ") and line.endswith("\n\n") for line in lines)
    return [line[len("data: ") : -2] for line in lines]


async def test_chunks_then_done_and_usage_only_where_present():
    async def stream():
        yield chunk("a")
        yield chunk("b", usage=Usage.of(1, 2))

    events = await body_events(await sse_response(stream()))
    assert events[-1] == "[DONE]"
    first, second = (json.loads(e) for e in events[:-1])
    assert "usage" not in first
    assert second["usage"]["total_tokens"] == 3


async def test_failure_mid_stream_sends_an_error_event_then_done():
    async def stream():
        yield chunk("a")
        raise RuntimeError("engine died: secret internals")

    events = await body_events(await sse_response(stream()))
    assert json.loads(events[0])["choices"][0]["text"] == "a"
    error = json.loads(events[1])["error"]
    assert error["type"] == "server_error" and "secret" not in error["message"]
    assert events[2] == "[DONE]"


async def test_failure_before_the_first_chunk_is_raised_not_streamed():
    async def stream():
        raise ContextLengthExceeded("too long", param="messages")
        yield  # pragma: no cover - makes this an async generator

    with pytest.raises(ContextLengthExceeded):
        await sse_response(stream())


async def test_empty_stream_is_service_unavailable():
    async def stream():
        return
        yield  # pragma: no cover

    with pytest.raises(ServiceUnavailable):
        await sse_response(stream())
