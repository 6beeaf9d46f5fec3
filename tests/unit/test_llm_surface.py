"""The LLM deployment's whole OpenAI surface over the real CPU engine and tiny Qwen2 (in-process, no Ray).

Structured outputs, tool calls, logprobs, n and prompt lists, through the deployment's own
methods, so each shape is checked where it is built; tests/e2e/test_openai_surface.py drives
the same through the official SDK and HTTP.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from deployments import base
from serve_app.config import LLMConfig
from serve_app.errors import InvalidRequest

REPO = Path(__file__).resolve().parents[2]
MODEL = "tiny-qwen2"
BOUNDED = {
    "type": "object",
    "properties": {
        "city": {"enum": ["Lisbon", "Porto"]},
        "sunny": {"type": "boolean"},
        "degrees": {"type": "integer", "minimum": -10, "maximum": 40},
    },
    "required": ["city", "sunny", "degrees"],
    "additionalProperties": False,
}
WEATHER_TOOL = {
    "type": "function",
    "function": {"name": "get_weather", "description": "Weather in a city", "parameters": BOUNDED},
}
OTHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {"type": "object", "properties": {"zone": {"enum": ["UTC", "CET"]}}, "required": ["zone"]},
    },
}


@pytest.fixture(scope="module")
def llm():
    from deployments.llm.deployment import LLM

    patch = pytest.MonkeyPatch()
    patch.setattr(base, "configure_offline_runtime", lambda data_dir: None)
    patch.setattr(base, "claim_gpu", lambda claim, cap_torch=True: None)
    config = LLMConfig(
        served_name=MODEL, model="tiny-qwen2", version="v1", engine="transformers", max_n=4, max_prompts=3
    )
    yield LLM.func_or_class(config, REPO / "models", Path("/tmp"))
    patch.undo()


def chat(**fields) -> dict:
    return {"model": MODEL, "messages": [{"role": "user", "content": "Weather in Lisbon?"}], "max_tokens": 60, **fields}


async def test_assistant_messages_carry_refusal_null(llm):
    reply = (await llm.chat(chat(max_tokens=4))).model_dump()
    assert reply["choices"][0]["message"]["refusal"] is None
    assert "tool_calls" not in reply["choices"][0]["message"]


@pytest.mark.parametrize("seed", [0, 1, 2])
async def test_a_bounded_json_schema_gives_json_that_validates(llm, seed):
    fmt = {"type": "json_schema", "json_schema": {"name": "weather", "schema": BOUNDED, "strict": True}}
    reply = await llm.chat(chat(response_format=fmt, seed=seed, temperature=1.0))
    jsonschema.validate(json.loads(reply.choices[0].message.content), BOUNDED)


async def test_json_object_mode_starts_an_object(llm):
    reply = await llm.chat(chat(response_format={"type": "json_object"}, max_tokens=8, temperature=0.0))
    assert reply.choices[0].message.content.lstrip().startswith("{")


async def test_a_named_tool_choice_always_gives_a_valid_call(llm):
    choice = {"type": "function", "function": {"name": "get_weather"}}
    reply = await llm.chat(chat(tools=[WEATHER_TOOL, OTHER_TOOL], tool_choice=choice, seed=3))
    call = reply.choices[0].message.tool_calls[0]
    assert reply.choices[0].finish_reason == "tool_calls"
    assert reply.choices[0].message.content is None
    assert call.function.name == "get_weather" and call.id.startswith("call-")
    jsonschema.validate(json.loads(call.function.arguments), BOUNDED)


@pytest.mark.parametrize("seed", [0, 1])
async def test_required_gives_calls_to_the_given_tools(llm, seed):
    reply = await llm.chat(chat(tools=[WEATHER_TOOL, OTHER_TOOL], tool_choice="required", seed=seed, max_tokens=120))
    calls = reply.choices[0].message.tool_calls
    assert calls and reply.choices[0].finish_reason == "tool_calls"
    tools = {"get_weather": BOUNDED, "get_time": OTHER_TOOL["function"]["parameters"]}
    for call in calls:
        jsonschema.validate(json.loads(call.function.arguments), tools[call.function.name])


async def test_streamed_tool_call_deltas_reassemble_into_the_call(llm):
    choice = {"type": "function", "function": {"name": "get_weather"}}
    chunks = [c async for c in llm.chat_stream(chat(tools=[WEATHER_TOOL], tool_choice=choice, stream=True, seed=4))]
    deltas = [tc for c in chunks for ch in c.choices for tc in ch.delta.tool_calls or []]
    assert deltas[0].id and deltas[0].function.name == "get_weather"
    arguments = "".join(d.function.arguments for d in deltas)
    jsonschema.validate(json.loads(arguments), BOUNDED)
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


async def test_a_tool_round_trip_history_is_accepted(llm):
    history = [
        {"role": "user", "content": "Weather in Lisbon?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call-1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Lisbon"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call-1", "content": '{"degrees": 21}'},
    ]
    reply = await llm.chat({"model": MODEL, "messages": history, "tools": [WEATHER_TOOL], "max_tokens": 5})
    assert reply.choices[0].finish_reason in ("stop", "length", "tool_calls")


async def test_chat_logprobs_in_openais_shape(llm):
    reply = await llm.chat(chat(logprobs=True, top_logprobs=3, max_tokens=5, temperature=0.0))
    content = reply.choices[0].logprobs.content
    assert len(content) == reply.usage.completion_tokens
    for entry in content:
        assert len(entry.top_logprobs) == 3
        assert entry.token == entry.top_logprobs[0].token and entry.logprob <= 0.0
        assert entry.bytes == list(entry.token.encode())


async def test_n_two_gives_two_indexed_choices(llm):
    reply = await llm.chat(chat(n=2, max_tokens=6, seed=11, ignore_eos=True))
    assert [c.index for c in reply.choices] == [0, 1]
    assert reply.usage.completion_tokens == 12  # the prompt counts once, each choice's tokens add up
    again = await llm.chat(chat(n=2, max_tokens=6, seed=11, ignore_eos=True))
    assert [c.message.content for c in again.choices] == [c.message.content for c in reply.choices]


async def test_n_above_the_configured_max_is_400(llm):
    with pytest.raises(InvalidRequest) as exc:
        await llm.chat(chat(n=5))
    assert exc.value.param == "n"


async def test_completions_take_a_prompt_list_and_token_ids(llm):
    ids = llm._tokenizer.encode("once upon a time")
    reply = await llm.completion(
        {"model": MODEL, "prompt": ["a", "b c"], "max_tokens": 3, "n": 2, "logprobs": 2, "temperature": 0.0}
    )
    assert [c.index for c in reply.choices] == [0, 1, 2, 3]
    assert reply.choices[0].text == reply.choices[1].text  # greedy: both choices of a prompt agree
    assert len(reply.choices[0].logprobs.tokens) == len(reply.choices[0].logprobs.top_logprobs)
    by_ids = await llm.completion({"model": MODEL, "prompt": ids, "max_tokens": 3, "temperature": 0.0, "echo": True})
    assert by_ids.choices[0].text.startswith("once upon a time")


@pytest.mark.parametrize(
    ("prompt", "param"), [(["a", "b", "c", "d"], "prompt"), ([1, 2, 999999], "prompt"), ([[1], [-1]], "prompt")]
)
async def test_bad_prompts_are_400_naming_prompt(llm, prompt, param):
    with pytest.raises(InvalidRequest) as exc:
        await llm.completion({"model": MODEL, "prompt": prompt})
    assert exc.value.param == param
    assert (await llm.completion({"model": MODEL, "prompt": "ok", "max_tokens": 2})).choices


async def test_an_unsupported_schema_is_400_naming_it(llm):
    lookbehind = {"type": "object", "properties": {"a": {"type": "string", "pattern": "(?<=a)b"}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": lookbehind}}
    with pytest.raises(InvalidRequest) as exc:
        await llm.chat(chat(response_format=fmt))
    assert exc.value.param == "response_format.json_schema.schema"
    assert "Lookbehind is not supported" in exc.value.message
    tool = {"type": "function", "function": {"name": "f", "parameters": lookbehind}}
    with pytest.raises(InvalidRequest) as exc:
        await llm.chat(chat(tools=[tool], tool_choice="required"))
    assert exc.value.param == "tools.0.function.parameters"
    assert (await llm.chat(chat(max_tokens=2))).choices


@pytest.mark.parametrize("stream", [False, True])
async def test_a_forced_call_cut_by_max_tokens_ends_with_length(llm, stream):
    # OpenAI and vLLM: the client must be able to tell a cut call (its arguments do not parse) from a whole one.
    named = {"type": "function", "function": {"name": "get_weather"}}
    for choice in (named, "required"):
        request = chat(tools=[WEATHER_TOOL], tool_choice=choice, seed=3, max_tokens=4, stream=stream)
        if stream:
            chunks = [c async for c in llm.chat_stream(request)]
            reasons = [ch.finish_reason for c in chunks for ch in c.choices if ch.finish_reason]
        else:
            reasons = [(await llm.chat(request)).choices[0].finish_reason]
        assert reasons == ["length"], choice


async def test_completions_apply_a_response_format(llm):
    fmt = {"type": "json_schema", "json_schema": {"name": "weather", "schema": BOUNDED}}
    reply = await llm.completion(
        {"model": MODEL, "prompt": "Weather:", "max_tokens": 60, "seed": 1, "response_format": fmt}
    )
    jsonschema.validate(json.loads(reply.choices[0].text), BOUNDED)
    lookbehind = {"type": "object", "properties": {"a": {"type": "string", "pattern": "(?<=a)b"}}}
    bad = {"type": "json_schema", "json_schema": {"name": "x", "schema": lookbehind}}
    with pytest.raises(InvalidRequest) as exc:
        await llm.completion({"model": MODEL, "prompt": "x", "response_format": bad})
    assert exc.value.param == "response_format.json_schema.schema"


async def test_echoed_prompt_logprobs_streamed_equal_the_whole_answer(llm):
    request = {"model": MODEL, "prompt": ["The cat sat", "héllo ✓"], "echo": True, "logprobs": 2, "max_tokens": 5}
    whole = await llm.completion({**request, "temperature": 0.0})
    chunks = [c async for c in llm.completion_stream({**request, "temperature": 0.0, "stream": True})]
    for choice in whole.choices:
        parts = [ch for c in chunks for ch in c.choices if ch.index == choice.index]
        assert "".join(p.text for p in parts) == choice.text
        assert parts[0].text.startswith(request["prompt"][choice.index])  # the echo goes with the first delta
        streamed = {
            k: [v for p in parts if p.logprobs for v in getattr(p.logprobs, k)] for k in ("tokens", "text_offset")
        }
        assert streamed == {"tokens": choice.logprobs.tokens, "text_offset": choice.logprobs.text_offset}
        assert choice.logprobs.token_logprobs[0] is None and choice.logprobs.text_offset[0] == 0
        assert len(choice.logprobs.tokens) == len(llm._tokenizer.encode(request["prompt"][choice.index])) + 5


async def test_max_tokens_zero_scores_the_prompt(llm):
    reply = await llm.completion(
        {"model": MODEL, "prompt": "The cat sat", "echo": True, "logprobs": 0, "max_tokens": 0}
    )
    choice = reply.choices[0]
    assert (choice.text, choice.finish_reason) == ("The cat sat", "length")
    assert reply.usage.completion_tokens == 0
    assert "".join(choice.logprobs.tokens) == "The cat sat"
    assert [len(t) for t in choice.logprobs.top_logprobs[1:]] == [1] * (len(choice.logprobs.tokens) - 1)


async def test_logit_bias_outside_the_vocabulary_is_400_naming_it(llm):
    with pytest.raises(InvalidRequest) as exc:
        await llm.chat(chat(logit_bias={str(llm._engine.vocab_size): 5}))
    assert exc.value.param == "logit_bias"
    assert (await llm.chat(chat(max_tokens=2, logit_bias={"0": 1}))).choices
