"""Validation of the OpenAI request shapes in serve_app/protocol.py."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from serve_app.protocol import ChatCompletionRequest, CompletionRequest, Usage

USER_HELLO = [{"role": "user", "content": "hello"}]


def chat(**fields) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"model": "m", "messages": USER_HELLO, **fields})


def completion(**fields) -> CompletionRequest:
    return CompletionRequest.model_validate({"model": "m", "prompt": "hello", **fields})


def error_fields(exc_info: pytest.ExceptionInfo[ValidationError]) -> set[tuple]:
    return {err["loc"] for err in exc_info.value.errors()}


# --- ChatCompletionRequest: required fields -------------------------------------------------


def test_minimal_chat_request_gets_openai_defaults():
    request = chat()
    assert request.model == "m"
    assert request.temperature == 1.0
    assert request.top_p == 1.0
    assert request.n == 1
    assert request.max_tokens is None
    assert request.stop is None
    assert request.stop_list == []
    assert request.seed is None
    assert request.stream is False
    assert request.include_usage_in_stream is False


def test_chat_request_without_model_is_rejected():
    with pytest.raises(ValidationError) as exc_info:
        ChatCompletionRequest.model_validate({"messages": USER_HELLO})
    assert ("model",) in error_fields(exc_info)


def test_chat_request_with_empty_model_is_rejected():
    with pytest.raises(ValidationError) as exc_info:
        chat(model="")
    assert ("model",) in error_fields(exc_info)


def test_chat_request_without_messages_is_rejected():
    with pytest.raises(ValidationError) as exc_info:
        ChatCompletionRequest.model_validate({"model": "m"})
    assert ("messages",) in error_fields(exc_info)


def test_chat_request_with_empty_messages_is_rejected():
    with pytest.raises(ValidationError) as exc_info:
        chat(messages=[])
    assert ("messages",) in error_fields(exc_info)


def test_chat_message_with_unknown_role_is_rejected():
    with pytest.raises(ValidationError) as exc_info:
        chat(messages=[{"role": "wizard", "content": "hi"}])
    assert ("messages", 0, "role") in error_fields(exc_info)


@pytest.mark.parametrize("role", ["system", "developer", "user", "assistant", "tool"])
def test_chat_message_accepts_every_openai_role(role):
    # A tool message answers one call, by its id (OpenAI requires it).
    extra = {"tool_call_id": "call-1"} if role == "tool" else {}
    assert chat(messages=[{"role": role, "content": "hi", **extra}]).messages[0].role == role


# --- sampling ranges ---------------------------------------------------------------------------


@pytest.mark.parametrize("temperature", [0.0, 0.7, 2.0])
def test_temperature_in_range_is_accepted(temperature):
    assert chat(temperature=temperature).temperature == temperature


@pytest.mark.parametrize("temperature", [-0.1, 2.1])
def test_temperature_out_of_range_is_rejected(temperature):
    with pytest.raises(ValidationError) as exc_info:
        chat(temperature=temperature)
    assert ("temperature",) in error_fields(exc_info)


@pytest.mark.parametrize("top_p", [0.01, 0.5, 1.0])
def test_top_p_in_range_is_accepted(top_p):
    assert chat(top_p=top_p).top_p == top_p


@pytest.mark.parametrize("top_p", [0.0, -0.5, 1.01])
def test_top_p_out_of_range_is_rejected(top_p):
    with pytest.raises(ValidationError) as exc_info:
        chat(top_p=top_p)
    assert ("top_p",) in error_fields(exc_info)


@pytest.mark.parametrize("field", ["presence_penalty", "frequency_penalty"])
@pytest.mark.parametrize("value", [-2.0, 0.0, 1.5, 2.0])
def test_penalty_in_range_is_accepted(field, value):
    assert getattr(chat(**{field: value}), field) == value


@pytest.mark.parametrize("field", ["presence_penalty", "frequency_penalty"])
@pytest.mark.parametrize("value", [-2.01, 2.01])
def test_penalty_out_of_range_is_rejected(field, value):
    with pytest.raises(ValidationError) as exc_info:
        chat(**{field: value})
    assert (field,) in error_fields(exc_info)


@pytest.mark.parametrize("n", [0, -1, 129])
def test_n_outside_its_hard_range_is_rejected(n):
    with pytest.raises(ValidationError) as exc_info:
        chat(n=n)
    assert ("n",) in error_fields(exc_info)


def test_n_equal_to_one_is_accepted():
    assert chat(n=1).n == 1


@pytest.mark.parametrize("max_tokens", [0, -1])
def test_non_positive_max_tokens_is_rejected(max_tokens):
    with pytest.raises(ValidationError) as exc_info:
        chat(max_tokens=max_tokens)
    assert ("max_tokens",) in error_fields(exc_info)


# --- stop ------------------------------------------------------------------------------------


def test_stop_as_string_becomes_a_one_element_stop_list():
    assert chat(stop="END").stop_list == ["END"]


def test_stop_as_list_is_kept_in_order():
    assert chat(stop=["a", "b", "c", "d"]).stop_list == ["a", "b", "c", "d"]


def test_more_than_four_stops_are_rejected():
    with pytest.raises(ValidationError) as exc_info:
        chat(stop=["a", "b", "c", "d", "e"])
    assert ("stop",) in error_fields(exc_info)


def test_empty_string_inside_stop_list_is_rejected():
    with pytest.raises(ValidationError) as exc_info:
        chat(stop=["ok", ""])
    assert ("stop",) in error_fields(exc_info)


def test_empty_stop_string_is_rejected():
    with pytest.raises(ValidationError):
        chat(stop="")


# --- max_completion_tokens -------------------------------------------------------------------


def test_max_completion_tokens_folds_into_max_tokens():
    request = chat(max_completion_tokens=12)
    assert request.max_tokens == 12


def test_explicit_max_tokens_is_not_overwritten_by_max_completion_tokens():
    assert chat(max_tokens=5, max_completion_tokens=12).max_tokens == 5


def test_non_positive_max_completion_tokens_is_rejected():
    with pytest.raises(ValidationError) as exc_info:
        chat(max_completion_tokens=0)
    assert ("max_completion_tokens",) in error_fields(exc_info)


# --- extras, content parts, stream options ----------------------------------------------------


def test_unknown_fields_sent_by_openai_clients_are_ignored():
    request = chat(user="u-1", logprobs=False, tools=[], parallel_tool_calls=True, not_a_field=3)
    assert not hasattr(request, "not_a_field")
    assert request.user == "u-1"  # kept: it keeps a user on one variant of an alias


def test_unknown_fields_inside_a_message_are_ignored():
    request = chat(messages=[{"role": "user", "content": "hi", "tool_call_id": "x"}])
    assert request.messages[0].text() == "hi"


def test_content_as_list_of_text_parts_is_joined():
    request = chat(
        messages=[
            {
                "role": "user",
                "content": [{"type": "text", "text": "hello "}, {"type": "text", "text": "world"}],
            }
        ]
    )
    assert request.messages[0].text() == "hello world"


def test_content_part_of_unsupported_type_is_rejected():
    with pytest.raises(ValidationError):
        chat(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}])


def test_message_without_content_has_empty_text():
    assert chat(messages=[{"role": "assistant", "content": None}]).messages[0].text() == ""


def test_stream_options_include_usage_is_read():
    request = chat(stream=True, stream_options={"include_usage": True})
    assert request.stream is True
    assert request.include_usage_in_stream is True


def test_stream_options_without_include_usage_defaults_to_false():
    assert chat(stream=True, stream_options={}).include_usage_in_stream is False


# --- CompletionRequest ------------------------------------------------------------------------


def test_completion_prompt_as_string():
    assert completion(prompt="once upon").prompts == ["once upon"]


def test_completion_prompt_as_one_element_list():
    assert completion(prompt=["once upon"]).prompts == ["once upon"]


def test_completion_prompt_lists_and_token_ids():
    assert completion(prompt=["a", "b"]).prompts == ["a", "b"]
    assert completion(prompt=[1, 2, 3]).prompts == [[1, 2, 3]]
    assert completion(prompt=[[1, 2], [3]]).prompts == [[1, 2], [3]]


def test_completion_prompt_as_empty_list_is_rejected():
    with pytest.raises(ValidationError) as exc_info:
        completion(prompt=[])
    assert ("prompt",) in error_fields(exc_info)


def test_completion_without_prompt_is_rejected():
    with pytest.raises(ValidationError) as exc_info:
        CompletionRequest.model_validate({"model": "m"})
    assert ("prompt",) in error_fields(exc_info)


def test_completion_without_model_is_rejected():
    with pytest.raises(ValidationError) as exc_info:
        CompletionRequest.model_validate({"prompt": "hi"})
    assert ("model",) in error_fields(exc_info)


def test_completion_max_tokens_defaults_to_sixteen_like_openai():
    assert completion().max_tokens == 16


def test_completion_shares_sampling_validation():
    with pytest.raises(ValidationError) as exc_info:
        completion(temperature=3.0, stop=["a", "b", "c", "d", "e"])
    assert {("temperature",), ("stop",)} <= error_fields(exc_info)


# --- what OpenAI and vLLM refuse, refused alike ---------------------------------------------


@pytest.mark.parametrize("seed", [-(2**63), 0, 2**63 - 1])
@pytest.mark.parametrize("make", [chat, completion])
def test_seeds_in_int64_are_accepted(make, seed):
    assert make(seed=seed).seed == seed


@pytest.mark.parametrize("seed", [-(2**63) - 1, 2**63, 2**64])
@pytest.mark.parametrize("make", [chat, completion])
def test_seeds_outside_int64_are_rejected_naming_seed(make, seed):
    # OpenAI's and vLLM's bound; the engines' RNGs raised a 500 on -2**63-1 and 2**64.
    with pytest.raises(ValidationError) as exc_info:
        make(seed=seed, stream=True)
    assert error_fields(exc_info) == {("seed",)}


@pytest.mark.parametrize("make", [chat, completion])
def test_stream_options_without_stream_are_rejected_naming_them(make):
    for options in ({"include_usage": True}, {}):
        with pytest.raises(ValidationError) as exc_info:
            make(stream_options=options)
        assert error_fields(exc_info) == {("stream_options",)}
    assert make(stream=False, stream_options=None).stream_options is None


def test_max_tokens_zero_is_for_echo_only():
    assert completion(max_tokens=0, echo=True).max_tokens == 0
    with pytest.raises(ValidationError) as exc_info:
        completion(max_tokens=0)
    assert error_fields(exc_info) == {("max_tokens",)}
    with pytest.raises(ValidationError) as exc_info:
        completion(max_tokens=-1, echo=True)
    assert ("max_tokens",) in error_fields(exc_info)


def test_completions_take_a_response_format():
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    request = completion(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}})
    assert request.response_format.json_schema.schema_ == schema
    with pytest.raises(ValidationError) as exc_info:
        completion(response_format={"type": "json_schema", "json_schema": {"schema": {"type": "strin"}}})
    assert error_fields(exc_info) == {("response_format", "json_schema", "schema")}


@pytest.mark.parametrize(
    ("make", "field", "value"),
    [
        (completion, "suffix", " the end"),
        (completion, "best_of", 3),
        (completion, "best_of", True),
        (completion, "add_special_tokens", False),
        (chat, "min_p", 0.05),
        (chat, "functions", [{"name": "f", "parameters": {}}]),
        (chat, "modalities", ["text", "audio"]),
        (chat, "echo", True),
        (chat, "chat_template_kwargs", {"enable_thinking": True}),
        (completion, "min_p", 0.1),
        (completion, "stop_token_ids", [2]),
        (completion, "use_beam_search", True),
        (completion, "prompt_logprobs", 1),
        (chat, "skip_special_tokens", False),
    ],
)
def test_fields_no_engine_honours_are_rejected_naming_them(make, field, value):
    # Ignoring one would answer another question than the one asked, with nothing to say so.
    with pytest.raises(ValidationError) as exc_info:
        make(**{field: value})
    assert error_fields(exc_info) == {(field,)}
    assert "not supported" in exc_info.value.errors()[0]["msg"]


def test_those_fields_at_their_neutral_values_are_accepted():
    # What SDKs and frameworks send by default must keep working.
    assert completion(suffix=None, best_of=1, min_p=0, skip_special_tokens=True, echo=False)
    assert chat(functions=[], modalities=["text"], echo=False, add_generation_prompt=True)
    assert chat(store=False, metadata={"a": "b"}, service_tier="auto", prediction=None)  # no effect on the answer


@pytest.mark.parametrize("make", [chat, completion])
def test_logit_bias_maps_token_ids_to_biases_within_100(make):
    assert make(logit_bias={"42": -100, "7": 100, "9": 0.5}).logit_bias == {"42": -100, "7": 100, "9": 0.5}
    for bad in ({"hello": 1}, {"-3": 1}, {"4": 100.5}, {"4": -101}, {"²": 1}):
        with pytest.raises(ValidationError) as exc_info:
            make(logit_bias=bad)
        assert error_fields(exc_info) == {("logit_bias",)}, bad


# --- Usage ------------------------------------------------------------------------------------


def test_usage_of_sums_prompt_and_completion_tokens():
    usage = Usage.of(prompt_tokens=7, completion_tokens=5)
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (7, 5, 12)


def test_usage_of_zero_completion_tokens():
    assert Usage.of(3, 0).total_tokens == 3


def test_stream_delta_serialises_only_what_it_carries():
    from serve_app.protocol import ChunkDelta

    assert ChunkDelta(role="assistant", content="").model_dump() == {"role": "assistant", "content": ""}
    assert ChunkDelta(content="hi").model_dump() == {"content": "hi"}
    assert ChunkDelta().model_dump() == {}
