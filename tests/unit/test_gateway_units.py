"""The gateway's pure parts: what a response used, reservations, the cache key, paths under a route prefix."""

from __future__ import annotations

import json

from serve_app.config import CacheConfig
from serve_app.gateway.cache import ResponseCache, cache_key, deterministic
from serve_app.gateway.state import Window
from serve_app.http.key_auth import app_path
from serve_app.http.key_limits import ratelimit_headers, reserved_tokens
from serve_app.http.usage_capture import UsageCapture


def _start(content_type: bytes, status: int = 200, variant: bytes | None = None) -> dict:
    headers = [(b"content-type", content_type)] + ([(b"x-model-variant", variant)] if variant else [])
    return {"type": "http.response.start", "status": status, "headers": headers}


def test_json_usage_and_variant_header():
    capture = UsageCapture(prompt_estimate=99)
    capture.start(_start(b"application/json", variant=b"qwen-b"))
    body = json.dumps({"model": "qwen", "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}})
    capture.body(body[:10].encode())
    capture.body(body[10:].encode())
    capture.finish()
    assert (capture.prompt, capture.completion_tokens, capture.variant, capture.model) == (5, 7, "qwen-b", "qwen")


def test_a_stream_without_usage_counts_its_content_chunks_over_split_messages():
    capture = UsageCapture(prompt_estimate=4)
    capture.start(_start(b"text/event-stream"))
    events = "".join(
        f"data: {json.dumps({'model': 'm', 'choices': [{'delta': {'content': c}}]}, separators=(',', ':'))}\n\n"
        for c in ["", "a", "b", "c"]
    )
    for i in range(0, len(events), 7):
        capture.body(events[i : i + 7].encode())
    capture.body(b"data: [DONE]\n\n")
    capture.finish()
    assert (capture.prompt, capture.completion_tokens, capture.model) == (4, 3, "m")


def test_a_transcript_is_audio_seconds_and_errors_use_nothing():
    capture = UsageCapture(prompt_estimate=0)
    capture.start(_start(b"application/json"))
    capture.body(b'{"text": "hi", "duration": 12.5}')
    capture.finish()
    assert capture.audio_seconds == 12.5
    failed = UsageCapture(prompt_estimate=50)
    failed.start(_start(b"application/json", status=400))
    failed.body(b'{"error": {}}')
    failed.finish()
    assert failed.prompt == 0 and failed.completion_tokens == 0


def test_reservations_are_prompt_plus_max_tokens_times_n():
    chat = {"messages": [{"role": "user", "content": "x" * 40}], "max_tokens": 10, "n": 2}
    assert reserved_tokens("/v1/chat/completions", chat, 256) == 10 + 4 + 20
    assert reserved_tokens("/v1/completions", {"prompt": "abcd", "max_completion_tokens": 3}, 256) == 1 + 3
    assert reserved_tokens("/v1/completions", {"prompt": "abcd", "max_tokens": "junk"}, 256) == 1 + 256
    assert reserved_tokens("/v1/embeddings", {"input": ["abcdefgh"]}, 256) == 2
    assert reserved_tokens("/v1/detections", None, 256) == 0


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
