"""The gateway's pure parts: reservations, a stream's usage, the cache key, paths under a route prefix."""

from __future__ import annotations

import asyncio

from serve_app.config import CacheConfig
from serve_app.gateway.cache import ResponseCache, cache_key, deterministic
from serve_app.gateway.state import Window
from serve_app.http.admission import ratelimit_headers, reserved_tokens
from serve_app.http.auth import Caller, _current, app_path
from serve_app.http.routes.llm import _metered_stream
from serve_app.protocol import ChatCompletionChunk, ChatCompletionRequest, CompletionRequest, EmbeddingRequest, Usage


def test_reservations_are_prompt_plus_max_tokens_times_n():
    chat = ChatCompletionRequest(model="m", messages=[{"role": "user", "content": "x" * 40}], max_tokens=10, n=2)
    assert reserved_tokens(chat, 256) == 10 + 4 + 20
    newer = ChatCompletionRequest(model="m", messages=[{"role": "user", "content": "abcd"}], max_completion_tokens=3)
    assert reserved_tokens(newer, 256) == 1 + 4 + 3
    assert reserved_tokens(CompletionRequest(model="m", prompt="abcd", max_tokens=3), 256) == 1 + 3
    assert reserved_tokens(CompletionRequest(model="m", prompt=["ab", "cd"], max_tokens=3), 256) == 2 + 2 * 3
    assert reserved_tokens(CompletionRequest(model="m", prompt=[1, 2, 3], max_tokens=2), 256) == 3 + 2
    assert reserved_tokens(EmbeddingRequest(model="m", input=["abcdefgh"]), 256) == 2


def _chunk(content: str | None, usage: Usage | None = None) -> ChatCompletionChunk:
    choices = [] if content is None else [{"delta": {"content": content}}]
    return ChatCompletionChunk(id="c", created=0, model="variant", choices=choices, usage=usage)


async def _metered(chunks: list[ChatCompletionChunk], wants_usage: bool) -> tuple[list[ChatCompletionChunk], Caller]:
    async def source():
        for chunk in chunks:
            yield chunk

    caller = Caller(master=False, token="t")
    token = _current.set(caller)
    try:
        return [c async for c in _metered_stream(source(), wants_usage)], caller
    finally:
        _current.reset(token)


def test_a_streams_usage_chunk_is_reported_and_dropped_unless_the_client_asked():
    usage = Usage.of(7, 48)
    chunks = [_chunk("a"), _chunk("b"), _chunk(None, usage)]
    sent, caller = asyncio.run(_metered(chunks, wants_usage=False))
    assert [c.choices[0].delta.content for c in sent] == ["a", "b"]
    assert (caller.usage.prompt_tokens, caller.usage.completion_tokens, caller.usage.variant) == (7, 48, "variant")
    sent, caller = asyncio.run(_metered(chunks, wants_usage=True))
    assert sent[-1].usage == usage and caller.usage.completion_tokens == 48


def test_openai_rate_limit_headers():
    headers = dict(ratelimit_headers(Window(limit_requests=10, remaining_requests=3, reset_s=12.34)))
    assert headers == {
        b"x-ratelimit-limit-requests": b"10",
        b"x-ratelimit-remaining-requests": b"3",
        b"x-ratelimit-reset-requests": b"12.3s",
    }
    assert ratelimit_headers(Window()) == []


def test_the_cache_key_covers_every_field_and_the_model_version():
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0}
    key = cache_key("/v1/chat/completions", "m@v1", body)
    assert key == cache_key("/v1/chat/completions", "m@v1", dict(reversed(body.items())))
    assert key != cache_key("/v1/chat/completions", "m@v2", body)
    assert key != cache_key("/v1/chat/completions", "m@v1", {**body, "top_p": 0.5})
    assert key != cache_key("/v1/completions", "m@v1", body)


def test_only_deterministic_requests_are_cached():
    assert deterministic("/v1/chat/completions", {"temperature": 0})
    assert not deterministic("/v1/chat/completions", {})
    assert not deterministic("/v1/chat/completions", {"temperature": 0, "stream": True})
    assert deterministic("/v1/embeddings", {"input": "x"})
    assert not deterministic("/v1/audio/transcriptions", {})


def test_the_cache_is_bounded_and_expires(monkeypatch):
    import time

    cache = ResponseCache(CacheConfig(ttl_s=10, max_entries=2, max_entry_bytes=1024))
    for key in "abc":
        cache.put(key, b"application/json", b"{}")
    assert len(cache) == 2 and cache.get("a") is None
    cache.put("big", b"application/json", b"x" * 2000)
    assert cache.get("big") is None
    now = time.monotonic()
    monkeypatch.setattr(time, "monotonic", lambda: now + 11)
    assert cache.get("c") is None


def test_paths_under_a_route_prefix():
    assert app_path({"path": "/gw/v1/chat/completions", "root_path": "/gw"}) == "/v1/chat/completions"
    assert app_path({"path": "/health", "root_path": ""}) == "/health"
