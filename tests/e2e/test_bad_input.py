"""Every kind of bad input gets an OpenAI error envelope, and the next request still succeeds."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.conftest import LOCAL_MODEL
from tests.envelopes import assert_envelope

GOOD_CHAT = {"model": LOCAL_MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


@pytest.fixture()
def http(local_app):
    with httpx.Client(base_url=local_app, timeout=60) as client:
        yield client
        # Whatever the bad request did, the service still serves.
        after = client.post("/v1/chat/completions", json=GOOD_CHAT)
        assert after.status_code == 200, after.text


def test_malformed_json(http):
    reply = http.post(
        "/v1/chat/completions", content=b'{"model": "x", "messages": [', headers={"content-type": "application/json"}
    )
    assert_envelope(reply, 400, code="invalid_json")


def test_schema_error_is_400_with_param(http):
    reply = http.post("/v1/chat/completions", json={**GOOD_CHAT, "temperature": "hot"})
    assert_envelope(reply, 400, param="temperature")


def test_missing_field_names_it(http):
    reply = http.post("/v1/chat/completions", json={"model": LOCAL_MODEL})
    assert_envelope(reply, 400, param="messages")


def test_wrong_json_type_for_body(http):
    reply = http.post("/v1/completions", json=["not", "an", "object"])
    assert_envelope(reply, 400)


def test_unknown_model_is_404_on_model(http):
    reply = http.post("/v1/chat/completions", json={**GOOD_CHAT, "model": "gpt-nonexistent"})
    assert_envelope(reply, 404, param="model", code="model_not_found")


def test_unknown_model_streamed_is_still_a_plain_404(http):
    reply = http.post("/v1/chat/completions", json={**GOOD_CHAT, "model": "gpt-nonexistent", "stream": True})
    assert_envelope(reply, 404, param="model")


@pytest.mark.parametrize("stream", [False, True])
def test_prompt_plus_max_tokens_over_context_is_400(http, stream):
    reply = http.post("/v1/chat/completions", json={**GOOD_CHAT, "max_tokens": 5000, "stream": stream})
    assert_envelope(reply, 400, param="messages", code="context_length_exceeded")


def test_prompt_alone_over_context_is_400(http):
    reply = http.post("/v1/completions", json={"model": LOCAL_MODEL, "prompt": "word " * 3000, "max_tokens": 1})
    assert_envelope(reply, 400, param="prompt", code="context_length_exceeded")


def test_wrong_content_type_is_415(http):
    reply = http.post(
        "/v1/chat/completions", content=b"model=x", headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert_envelope(reply, 415)


def test_oversize_body_is_413(http):
    reply = http.post("/v1/completions", json={"model": LOCAL_MODEL, "prompt": "x" * (2 << 20)})
    assert_envelope(reply, 413)


def test_unknown_route_is_404_envelope(http):
    assert_envelope(http.get("/v1/nothing-here"), 404)


def test_n_above_the_llms_max_n_is_rejected(http):
    # configs/local.yaml leaves llm.max_n at its default, 8.
    assert_envelope(http.post("/v1/chat/completions", json={**GOOD_CHAT, "n": 9}), 400, param="n")


def test_sdk_raises_typed_errors(openai_client):
    with pytest.raises(openai.NotFoundError):
        openai_client.chat.completions.create(model="nope", messages=GOOD_CHAT["messages"])
    with pytest.raises(openai.BadRequestError) as info:
        openai_client.chat.completions.create(model=LOCAL_MODEL, messages=GOOD_CHAT["messages"], max_tokens=99999)
    assert info.value.code == "context_length_exceeded"
    assert openai_client.chat.completions.create(
        model=LOCAL_MODEL, messages=GOOD_CHAT["messages"], max_tokens=2
    ).choices


def test_health_and_ready(http):
    assert http.get("/health").json() == {"status": "ok"}
    ready = http.get("/ready")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"


def test_oversize_chunked_body_without_length_is_413(http):
    def body():
        yield b'{"model": "tiny-qwen2", "prompt": "'
        for _ in range(64):
            yield b"x" * 32768
        yield b'"}'

    reply = http.post("/v1/completions", content=body(), headers={"content-type": "application/json"})
    assert_envelope(reply, 413)


@pytest.mark.parametrize("raw", [b"\xff\xfe\x00", b"null", b"", b"42"])
def test_bodies_that_are_not_a_json_object(http, raw):
    reply = http.post("/v1/chat/completions", content=raw, headers={"content-type": "application/json"})
    assert_envelope(reply, 400)


def test_image_content_part_is_rejected_by_the_text_llm(http):
    messages = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}]}]
    reply = http.post("/v1/chat/completions", json={**GOOD_CHAT, "messages": messages})
    assert_envelope(reply, 400)
    assert reply.json()["error"]["param"].startswith("messages.0.content")


GOOD_COMPLETION = {"model": LOCAL_MODEL, "prompt": "hi", "max_tokens": 4}
INVALID_SCHEMA = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "strin"}}}


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("path", "extra", "param"),
    [
        ("/v1/chat/completions", {"seed": -(2**63) - 1}, "seed"),
        ("/v1/chat/completions", {"seed": 2**64}, "seed"),
        ("/v1/completions", {"seed": -(2**63) - 1}, "seed"),
        ("/v1/completions", {"seed": 2**64}, "seed"),
        ("/v1/completions", {"response_format": INVALID_SCHEMA}, "response_format.json_schema.schema"),
        ("/v1/completions", {"suffix": " and so on"}, "suffix"),
        ("/v1/chat/completions", {"min_p": 0.2}, "min_p"),
        ("/v1/chat/completions", {"logit_bias": {"42": 101}}, "logit_bias"),
        ("/v1/completions", {"logit_bias": {str(10**7): 5}}, "logit_bias"),
    ],
)
def test_bad_llm_input_is_400_naming_its_param(http, path, extra, param, stream):
    # A 500 (seeds) or a silently different answer (ignored fields) before: a client following the spec
    # gets OpenAI's and vLLM's 400 instead; the fixture checks the service serves on.
    good = GOOD_CHAT if path == "/v1/chat/completions" else GOOD_COMPLETION
    assert_envelope(http.post(path, json={**good, **extra, "stream": stream}), 400, param=param)


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
def test_stream_options_without_stream_are_400(http, path):
    good = GOOD_CHAT if path == "/v1/chat/completions" else GOOD_COMPLETION
    reply = http.post(path, json={**good, "stream_options": {"include_usage": True}})
    assert_envelope(reply, 400, param="stream_options")


def test_max_tokens_zero_without_echo_is_400(http):
    reply = http.post("/v1/completions", json={**GOOD_COMPLETION, "max_tokens": 0})
    assert_envelope(reply, 400, param="max_tokens")
    assert http.post("/v1/completions", json={**GOOD_COMPLETION, "max_tokens": 0, "echo": True}).status_code == 200
