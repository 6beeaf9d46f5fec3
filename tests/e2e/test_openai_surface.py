"""The whole OpenAI LLM surface through the official `openai` SDK against the session app (CPU engine).

The tiny model writes noise, so what is asserted is the shape, and what a grammar guarantees:
a bounded schema's answer validates, a forced tool call parses; and scores, which are exact: the
logprobs of an echoed prompt are the model's own, compared with the same tokens scored here
in-process. Bad input, with a successful request after each, is tests/e2e/test_bad_input.py,
tests/http/test_llm_validation.py and tests/unit/test_llm_surface.py.
"""

from __future__ import annotations

import json
from typing import Literal

import openai
import pytest
from pydantic import BaseModel, Field

from tests import serve_harness
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


# --- scoring: echo + logprobs, as evaluation harnesses call it --------------------------------


@pytest.fixture(scope="module")
def scorer():
    """The served checkpoint, loaded here: log p(token i | tokens before it) for any token ids."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = serve_harness.REPO / "models" / LOCAL_MODEL / "v1"
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()

    def score(ids: list[int]) -> list[tuple[float, bool]]:
        """For each token after the first: its logprob, and whether it is the most likely one there."""
        with torch.inference_mode():
            logprobs = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].float(), dim=-1)
        return [(float(logprobs[i - 1, ids[i]]), int(logprobs[i - 1].argmax()) == ids[i]) for i in range(1, len(ids))]

    score.tokenizer = AutoTokenizer.from_pretrained(path)
    return score


def test_echo_with_logprobs_scores_the_prompt_as_the_model_does(openai_client, scorer):
    prompt = "The quick brown fox jumps over the lazy dog"
    reply = openai_client.completions.create(
        model=LOCAL_MODEL, prompt=prompt, echo=True, logprobs=2, max_tokens=3, temperature=0
    )
    choice = reply.choices[0]
    logprobs = choice.logprobs
    prompt_ids = scorer.tokenizer.encode(prompt)
    assert choice.text.startswith(prompt)
    assert reply.usage.prompt_tokens == len(prompt_ids)
    size = len(prompt_ids) + reply.usage.completion_tokens
    assert len(logprobs.tokens) == len(logprobs.token_logprobs) == len(logprobs.top_logprobs) == size
    # Nothing predicts the first token: null, as OpenAI's legacy API and vLLM write it.
    assert logprobs.token_logprobs[0] is None and logprobs.top_logprobs[0] is None
    assert "".join(logprobs.tokens[: len(prompt_ids)]) == prompt
    assert logprobs.text_offset == [sum(len(t) for t in logprobs.tokens[:i]) for i in range(size)]
    expected = [logprob for logprob, _ in scorer(prompt_ids)]
    assert logprobs.token_logprobs[1 : len(prompt_ids)] == pytest.approx(expected, abs=1e-4)
    # Each position lists its own token and the top 2 (3 entries at most).
    assert all(
        token in top and 1 <= len(top) <= 3
        for token, top in zip(logprobs.tokens[1:], logprobs.top_logprobs[1:], strict=True)
    )


def test_loglikelihood_of_two_continuations_as_a_harness_scores_them(openai_client, scorer):
    # lm-evaluation-harness's loglikelihood request: context + continuation as token ids, echo, logprobs 1,
    # max_tokens 0; the continuation's logprob is the sum over its tokens, "greedy" if each is the top one.
    context = scorer.tokenizer.encode("Question: what colour is the sky? Answer:")
    for continuation in (" blue", " a shade of green"):
        target = scorer.tokenizer.encode(continuation)
        reply = openai_client.completions.create(
            model=LOCAL_MODEL, prompt=context + target, echo=True, logprobs=1, max_tokens=0
        )
        logprobs = reply.choices[0].logprobs
        assert reply.choices[0].finish_reason == "length" and reply.usage.completion_tokens == 0
        served = sum(logprobs.token_logprobs[len(context) :])
        with_top = zip(logprobs.tokens[len(context) :], logprobs.top_logprobs[len(context) :], strict=True)
        served_greedy = all(max(top, key=top.get) == token for token, top in with_top)
        expected = scorer(context + target)[len(context) - 1 :]
        assert served == pytest.approx(sum(logprob for logprob, _ in expected), abs=1e-3)
        assert served_greedy == all(greedy for _, greedy in expected)


@pytest.mark.parametrize("stream", [False, True])
def test_a_forced_tool_call_cut_by_max_tokens_says_length(openai_client, stream):
    reply = openai_client.chat.completions.create(
        model=LOCAL_MODEL,
        messages=ASK,
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=3,
        seed=2,
        stream=stream,
    )
    chunks = list(reply) if stream else [reply]
    assert [c.finish_reason for chunk in chunks for c in chunk.choices if c.finish_reason] == ["length"]


def test_completions_apply_a_response_format(openai_client):
    schema = Weather.model_json_schema()
    reply = openai_client.completions.create(
        model=LOCAL_MODEL,
        prompt="Weather report as JSON:",
        max_tokens=60,
        seed=1,
        extra_body={"response_format": {"type": "json_schema", "json_schema": {"name": "w", "schema": schema}}},
    )
    assert Weather.model_validate_json(reply.choices[0].text)


def test_logit_bias_steers_the_sampling(openai_client, scorer):
    token = scorer.tokenizer.encode(" blue")[0]
    reply = openai_client.completions.create(
        model=LOCAL_MODEL, prompt="The sky is", max_tokens=4, temperature=0, logit_bias={str(token): 100}
    )
    assert reply.choices[0].text == scorer.tokenizer.decode([token] * 4)
