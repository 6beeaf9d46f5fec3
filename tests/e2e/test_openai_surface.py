"""The whole OpenAI LLM surface through the official `openai` SDK against the session app (CPU engine).

The tiny model writes noise, so what is asserted is the shape, and what a grammar guarantees:
a bounded schema's answer validates, a forced tool call parses. Bad input, with a successful
request after each, is tests/http/test_llm_validation.py and tests/unit/test_llm_surface.py.
"""

from __future__ import annotations

import json
from typing import Literal

import openai
import pytest
from pydantic import BaseModel, Field

from tests.conftest import LOCAL_MODEL

ASK = [{"role": "user", "content": "What is the weather in Lisbon?"}]


class Weather(BaseModel):
    city: Literal["Lisbon", "Porto"]
    sunny: bool
    degrees: int = Field(ge=-10, le=40)


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"enum": ["Lisbon", "Porto"]}, "unit": {"enum": ["C", "F"]}},
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}


def test_parse_with_a_pydantic_model_gives_a_validated_object(openai_client):
    completion = openai_client.chat.completions.parse(
        model=LOCAL_MODEL, messages=ASK, response_format=Weather, max_tokens=60, seed=1
    )
    message = completion.choices[0].message
    assert isinstance(message.parsed, Weather)
    assert message.refusal is None


def test_a_tool_call_round_trip(openai_client):
    first = openai_client.chat.completions.create(
        model=LOCAL_MODEL,
        messages=ASK,
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=40,
        seed=2,
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather"
    arguments = json.loads(call.function.arguments)
    assert arguments["city"] in ("Lisbon", "Porto")
    answer = openai_client.chat.completions.create(
        model=LOCAL_MODEL,
        messages=[
            *ASK,
            choice.message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"degrees": 21})},
        ],
        tools=[WEATHER_TOOL],
        tool_choice="none",
        max_tokens=8,
    )
    assert answer.choices[0].message.role == "assistant"
    assert answer.choices[0].finish_reason in ("stop", "length")


def test_required_tool_choice_gives_valid_calls(openai_client):
    reply = openai_client.chat.completions.create(
        model=LOCAL_MODEL, messages=ASK, tools=[WEATHER_TOOL], tool_choice="required", max_tokens=80, seed=3
    )
    calls = reply.choices[0].message.tool_calls
    assert calls and all(json.loads(c.function.arguments)["unit"] in ("C", "F") for c in calls)


def test_streamed_tool_call_deltas_reassemble(openai_client):
    stream = openai_client.chat.completions.create(
        model=LOCAL_MODEL,
        messages=ASK,
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=40,
        seed=4,
        stream=True,
    )
    calls: dict[int, dict] = {}
    finish = None
    for chunk in stream:
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for delta in choice.delta.tool_calls or []:
                call = calls.setdefault(delta.index, {"id": None, "name": "", "arguments": ""})
                call["id"] = call["id"] or delta.id
                call["name"] += (delta.function.name or "") if delta.function else ""
                call["arguments"] += (delta.function.arguments or "") if delta.function else ""
    assert finish == "tool_calls"
    assert calls[0]["id"] and calls[0]["name"] == "get_weather"
    assert json.loads(calls[0]["arguments"])["city"] in ("Lisbon", "Porto")


def test_chat_logprobs_shapes(openai_client):
    reply = openai_client.chat.completions.create(
        model=LOCAL_MODEL, messages=ASK, max_tokens=5, logprobs=True, top_logprobs=2, temperature=0
    )
    content = reply.choices[0].logprobs.content
    assert len(content) == reply.usage.completion_tokens
    assert all(len(e.top_logprobs) == 2 and e.logprob <= 0 and e.bytes is not None for e in content)


def test_n_two_gives_two_choices(openai_client):
    reply = openai_client.chat.completions.create(model=LOCAL_MODEL, messages=ASK, max_tokens=6, n=2, seed=5)
    assert sorted(c.index for c in reply.choices) == [0, 1]


def test_a_completions_prompt_list_with_logprobs(openai_client):
    reply = openai_client.completions.create(
        model=LOCAL_MODEL, prompt=["Once upon", "The sea"], max_tokens=4, logprobs=2, temperature=0
    )
    assert sorted(c.index for c in reply.choices) == [0, 1]
    logprobs = reply.choices[0].logprobs
    assert len(logprobs.tokens) == len(logprobs.token_logprobs) == len(logprobs.top_logprobs)
    by_ids = openai_client.completions.create(model=LOCAL_MODEL, prompt=[1, 2, 3], max_tokens=2)
    assert by_ids.choices[0].finish_reason in ("stop", "length")


def test_out_of_vocabulary_token_ids_are_400_and_the_next_request_is_served(openai_client):
    with pytest.raises(openai.BadRequestError) as exc:
        openai_client.completions.create(model=LOCAL_MODEL, prompt=[1, 10**7], max_tokens=2)
    assert exc.value.body["param"] == "prompt"
    assert openai_client.completions.create(model=LOCAL_MODEL, prompt="ok", max_tokens=2).choices


def test_function_calling_structured_output_parses_the_arguments(openai_client):
    # What agent frameworks' "function_calling" structured output does: a strict tool from a pydantic
    # model, forced, and the SDK parsing its arguments back into the model.
    tool = openai.pydantic_function_tool(Weather)
    completion = openai_client.chat.completions.parse(
        model=LOCAL_MODEL,
        messages=ASK,
        tools=[tool],
        tool_choice={"type": "function", "function": {"name": tool["function"]["name"]}},
        max_tokens=60,
        seed=6,
    )
    call = completion.choices[0].message.tool_calls[0]
    assert isinstance(call.function.parsed_arguments, Weather)


def test_json_mode_answers_an_object(openai_client):
    reply = openai_client.chat.completions.create(
        model=LOCAL_MODEL, messages=ASK, response_format={"type": "json_object"}, max_tokens=6, temperature=0
    )
    assert reply.choices[0].message.content.startswith("{")
