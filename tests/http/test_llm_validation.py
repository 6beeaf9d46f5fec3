"""The OpenAI surface's bad input through the real routes: a 400 naming its param, then the app serves on.

What needs the model (a schema the grammar engine cannot compile, token ids outside the
vocabulary, n above the LLM's max_n) is the deployment's check: tests/unit/test_llm_surface.py.
"""

from __future__ import annotations

import pytest

from tests.http.support import LLM, assert_envelope

CHAT = {"model": LLM, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}}}


def tool(name: str, parameters: dict | None = None) -> dict:
    return {"type": "function", "function": {"name": name, "parameters": parameters or SCHEMA}}


@pytest.fixture()
def http(client):
    yield client
    assert client.post("/v1/chat/completions", json=CHAT).status_code == 200
    assert client.post("/v1/completions", json={"model": LLM, "prompt": ["a", "b"]}).status_code == 200


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "strin"}}}},
            "response_format.json_schema.schema",
        ),
        ({"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
        ({"response_format": {"type": "yaml"}}, "response_format.type"),
        ({"tools": [tool("f", {"type": 12})]}, "tools.0.function.parameters"),
        ({"tools": [tool("f"), tool("f")]}, "tools"),
        ({"tools": [tool("bad name!")]}, "tools.0.function.name"),
        ({"tools": [tool("f")], "tool_choice": {"type": "function", "function": {"name": "g"}}}, "tool_choice"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"n": 0}, "n"),
        ({"top_k": -2}, "top_k"),
        ({"repetition_penalty": 0}, "repetition_penalty"),
        ({"min_tokens": -1}, "min_tokens"),
        ({"messages": [{"role": "tool", "content": "42"}]}, "messages.0.tool_call_id"),
        ({"seed": -(2**63) - 1}, "seed"),
        ({"seed": 2**64, "stream": True}, "seed"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
        ({"logit_bias": {"a": 10}}, "logit_bias"),
        ({"min_p": 0.1}, "min_p"),
        ({"function_call": {"name": "f"}}, "function_call"),
    ],
    ids=[
        "invalid-schema",
        "json-schema-missing",
        "unknown-format",
        "tool-schema",
        "duplicate-tools",
        "tool-name",
        "choice-names-no-tool",
        "required-without-tools",
        "top-logprobs-above-20",
        "top-logprobs-without-logprobs",
        "n-zero",
        "top-k",
        "repetition-penalty",
        "min-tokens",
        "tool-message-without-call-id",
        "seed-below-int64",
        "seed-above-int64-streamed",
        "stream-options-without-stream",
        "logit-bias-key",
        "min-p",
        "function-call",
    ],
)
def test_bad_chat_input_is_400_naming_its_param(http, extra, param):
    assert_envelope(http.post("/v1/chat/completions", json={**CHAT, **extra}), 400, param=param)


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"prompt": []}, "prompt"),
        ({"prompt": [[1], []]}, "prompt"),
        ({"logprobs": 21}, "logprobs"),
        ({"seed": 2**64}, "seed"),
        ({"seed": -(2**63) - 1, "stream": True}, "seed"),
        ({"stream_options": {"include_usage": False}, "stream": False}, "stream_options"),
        ({"max_tokens": 0}, "max_tokens"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"schema": {"type": 3}}}},
            "response_format.json_schema.schema",
        ),
        ({"suffix": "!"}, "suffix"),
        ({"best_of": 2}, "best_of"),
    ],
    ids=[
        "empty-list",
        "empty-token-list",
        "logprobs-above-20",
        "seed-above-int64",
        "seed-below-int64-streamed",
        "stream-options-without-stream",
        "max-tokens-zero-without-echo",
        "invalid-schema",
        "suffix",
        "best-of",
    ],
)
def test_bad_completion_input_is_400_naming_its_param(http, extra, param):
    body = {"model": LLM, "prompt": "x", **extra}
    assert_envelope(http.post("/v1/completions", json=body), 400, param=param)


def test_the_structured_fields_are_accepted(http):
    body = {
        **CHAT,
        "tools": [tool("f")],
        "tool_choice": {"type": "function", "function": {"name": "f"}},
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": SCHEMA, "strict": True}},
        "logprobs": True,
        "top_logprobs": 20,
        "n": 2,
        "top_k": 5,
        "min_tokens": 1,
        "ignore_eos": True,
        "repetition_penalty": 1.1,
    }
    assert http.post("/v1/chat/completions", json=body).status_code == 200
