"""Request → engine settings, engine deltas → OpenAI responses, and the streaming text helpers."""

from __future__ import annotations

import pytest

from deployments.llm.choices import ChatChoiceStream, chat_choice
from deployments.llm.engines.base import (
    GenerationDelta,
    IncrementalDetokenizer,
    SamplingSettings,
    StopStringMatcher,
    TokenLogprob,
)
from deployments.llm.openai_mapping import (
    Accumulator,
    LogprobFormatter,
    chat_chunk,
    chat_usage_chunk,
    completion_choice,
    completion_chunk,
    completion_usage_chunk,
    sampling_settings,
)
from deployments.llm.tools import ToolMode
from serve_app.errors import ContextLengthExceeded
from serve_app.protocol import (
    ChatCompletion,
    ChatCompletionRequest,
    ChunkDelta,
    Completion,
    CompletionRequest,
    Usage,
)


def chat(**fields) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields}
    )


def completion(**fields) -> CompletionRequest:
    return CompletionRequest.model_validate({"model": "m", "prompt": "hi", **fields})


def finished_accumulator() -> Accumulator:
    acc = Accumulator(prompt_tokens=4)
    acc.add(GenerationDelta("Hel", 2))
    acc.add(GenerationDelta("lo", 1, "length"))
    return acc


def chat_completion(model: str, acc: Accumulator) -> ChatCompletion:
    """As LLM.chat builds its answer, for a request without tools or logprobs."""
    return ChatCompletion(model=model, choices=[chat_choice(acc, ToolMode("none"), None)], usage=acc.usage)


def text_completion(model: str, acc: Accumulator, echo_prefix: str = "") -> Completion:
    """As LLM.completion builds its answer, for one prompt without logprobs."""
    return Completion(model=model, choices=[completion_choice(acc, echo_prefix)], usage=acc.usage)


# --- sampling_settings ------------------------------------------------------------------------


def test_sampling_settings_maps_every_field():
    request = chat(
        max_tokens=20,
        temperature=0.3,
        top_p=0.9,
        stop=["x", "yz"],
        seed=42,
        presence_penalty=0.5,
        frequency_penalty=-0.25,
    )
    settings = sampling_settings(request, prompt_tokens=10, max_model_len=100, prompt_param="messages")
    assert settings == SamplingSettings(
        max_tokens=20,
        temperature=0.3,
        top_p=0.9,
        stop=("x", "yz"),
        seed=42,
        presence_penalty=0.5,
        frequency_penalty=-0.25,
    )


def test_sampling_settings_turns_a_single_stop_string_into_a_tuple():
    settings = sampling_settings(chat(stop="END"), 1, 100, "messages")
    assert settings.stop == ("END",)


def test_sampling_settings_without_stop_has_empty_stop_tuple():
    assert sampling_settings(chat(), 1, 100, "messages").stop == ()


def test_sampling_settings_uses_folded_max_completion_tokens():
    assert sampling_settings(chat(max_completion_tokens=7), 1, 100, "messages").max_tokens == 7


def test_max_tokens_defaults_to_the_room_left_in_the_context():
    assert sampling_settings(chat(), prompt_tokens=30, max_model_len=100, prompt_param="messages").max_tokens == 70


def test_max_tokens_exactly_filling_the_context_is_allowed():
    assert sampling_settings(chat(max_tokens=70), 30, 100, "messages").max_tokens == 70


def test_prompt_plus_max_tokens_over_the_window_raises_context_length_exceeded():
    with pytest.raises(ContextLengthExceeded) as exc_info:
        sampling_settings(chat(max_tokens=71), prompt_tokens=30, max_model_len=100, prompt_param="messages")
    error = exc_info.value
    assert error.status == 400
    assert error.code == "context_length_exceeded"
    assert error.param == "messages"
    assert "100" in error.message and "101" in error.message


def test_context_length_error_names_the_prompt_param_of_a_text_completion():
    with pytest.raises(ContextLengthExceeded) as exc_info:
        sampling_settings(completion(max_tokens=50), prompt_tokens=60, max_model_len=100, prompt_param="prompt")
    assert exc_info.value.param == "prompt"
    assert exc_info.value.status == 400


def test_prompt_alone_filling_the_window_raises_context_length_exceeded():
    with pytest.raises(ContextLengthExceeded) as exc_info:
        sampling_settings(chat(), prompt_tokens=100, max_model_len=100, prompt_param="messages")
    assert exc_info.value.code == "context_length_exceeded"
    assert exc_info.value.param == "messages"
    assert exc_info.value.status == 400


def test_prompt_longer_than_the_window_raises_context_length_exceeded():
    with pytest.raises(ContextLengthExceeded) as exc_info:
        sampling_settings(chat(), prompt_tokens=150, max_model_len=100, prompt_param="messages")
    assert exc_info.value.code == "context_length_exceeded"


def test_prompt_filling_the_window_is_rejected_even_with_small_max_tokens():
    with pytest.raises(ContextLengthExceeded):
        sampling_settings(chat(max_tokens=1), prompt_tokens=100, max_model_len=100, prompt_param="messages")


def test_logit_bias_maps_to_token_ids():
    settings = sampling_settings(chat(logit_bias={"42": -100, "7": 2.5}), 1, 100, "messages")
    assert settings.logit_bias == ((42, -100), (7, 2.5))
    assert sampling_settings(chat(), 1, 100, "messages").logit_bias == ()


def test_prompt_logprobs_are_asked_for_with_echo_only():
    assert sampling_settings(completion(echo=True, logprobs=2), 1, 100, "prompt").prompt_logprobs == 2
    assert sampling_settings(completion(echo=True, logprobs=0), 1, 100, "prompt").prompt_logprobs == 0
    assert sampling_settings(completion(logprobs=2), 1, 100, "prompt").prompt_logprobs is None
    assert sampling_settings(completion(echo=True), 1, 100, "prompt").prompt_logprobs is None


def test_max_tokens_zero_scores_the_prompt_within_the_window():
    assert sampling_settings(completion(echo=True, max_tokens=0, logprobs=1), 99, 100, "prompt").max_tokens == 0
    with pytest.raises(ContextLengthExceeded):
        sampling_settings(completion(echo=True, max_tokens=0), 100, 100, "prompt")


# --- Accumulator and response shapes ----------------------------------------------------------


def test_accumulator_sums_text_tokens_and_keeps_the_finish_reason():
    acc = Accumulator(prompt_tokens=5)
    acc.add(GenerationDelta("a", 1))
    acc.add(GenerationDelta("", 2))
    acc.add(GenerationDelta("bc", 1, "stop"))
    assert acc.text == "abc"
    assert acc.completion_tokens == 4
    assert acc.finish_reason == "stop"
    assert acc.usage == Usage(prompt_tokens=5, completion_tokens=4, total_tokens=9)


def test_accumulator_starts_empty():
    acc = Accumulator(prompt_tokens=3)
    assert acc.text == ""
    assert acc.finish_reason is None
    assert acc.usage.total_tokens == 3


def test_chat_completion_shape():
    body = chat_completion("m", finished_accumulator()).model_dump()
    assert body["id"].startswith("chatcmpl-")
    assert body["object"] == "chat.completion"
    assert isinstance(body["created"], int)
    assert body["model"] == "m"
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello", "refusal": None},
            "finish_reason": "length",
            "logprobs": None,
        }
    ]
    assert body["usage"] == {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}


def test_chat_chunk_reuses_id_created_and_model_of_the_completion():
    base = chat_completion("m", finished_accumulator())
    chunk = chat_chunk(base, ChunkDelta(content="He")).model_dump()
    assert chunk["id"] == base.id
    assert chunk["created"] == base.created
    assert chunk["model"] == "m"
    assert chunk["object"] == "chat.completion.chunk"
    assert chunk["choices"] == [{"index": 0, "delta": {"content": "He"}, "finish_reason": None, "logprobs": None}]
    assert chunk["usage"] is None


def test_chat_chunk_carries_the_finish_reason():
    base = chat_completion("m", finished_accumulator())
    chunk = chat_chunk(base, ChunkDelta(), "stop")
    assert chunk.choices[0].finish_reason == "stop"


def test_chat_usage_chunk_has_no_choices_and_the_usage():
    base = chat_completion("m", finished_accumulator())
    chunk = chat_usage_chunk(base, Usage.of(4, 3)).model_dump()
    assert chunk["id"] == base.id
    assert chunk["object"] == "chat.completion.chunk"
    assert chunk["choices"] == []
    assert chunk["usage"] == {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}


def test_text_completion_shape():
    body = text_completion("m", finished_accumulator()).model_dump()
    assert body["id"].startswith("cmpl-")
    assert body["object"] == "text_completion"
    assert body["model"] == "m"
    assert body["choices"] == [{"index": 0, "text": "Hello", "finish_reason": "length", "logprobs": None}]
    assert body["usage"] == {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}


def test_text_completion_with_echo_prefixes_the_prompt():
    body = text_completion("m", finished_accumulator(), echo_prefix="Say: ")
    assert body.choices[0].text == "Say: Hello"


def test_completion_chunk_and_usage_chunk_share_the_completion_id():
    base = text_completion("m", finished_accumulator())
    chunk = completion_chunk(base, "He")
    usage_chunk = completion_usage_chunk(base, Usage.of(4, 3))
    assert chunk.id == usage_chunk.id == base.id
    assert chunk.choices[0].text == "He" and chunk.usage is None
    assert usage_chunk.choices == [] and usage_chunk.usage.total_tokens == 7


# --- the legacy logprobs shape -----------------------------------------------------------------


class LetterTokenizer:
    """Token i decodes to the i-th letter: enough for the shape, whose text is the tokens'."""

    def decode(self, ids: list[int]) -> str:
        return "".join("abcdefghij"[i] * (i + 1) for i in ids)


def test_completion_logprobs_with_the_prompt_start_with_null_and_offsets_from_zero():
    prompt = (TokenLogprob(1, None), TokenLogprob(2, -0.5, ((3, -0.2), (2, -0.5))))
    generated = (TokenLogprob(0, -1.0, ((4, -0.1), (5, -0.9))),)
    out = LogprobFormatter(LetterTokenizer()).completion(prompt + generated)
    assert out.tokens == ["bb", "ccc", "a"]
    assert out.token_logprobs == [None, -0.5, -1.0]
    # The token itself first (OpenAI: up to logprobs + 1 entries), then the top ones.
    assert out.top_logprobs == [None, {"ccc": -0.5, "dddd": -0.2}, {"a": -1.0, "eeeee": -0.1, "ffffff": -0.9}]
    assert out.text_offset == [0, 2, 5]


def test_logprobs_zero_gives_the_sampled_token_alone():
    out = LogprobFormatter(LetterTokenizer()).completion([TokenLogprob(2, -0.25)], offset=4)
    assert out.top_logprobs == [{"ccc": -0.25}]
    assert out.text_offset == [4]


def test_impossible_tokens_are_written_as_minus_9999():
    out = LogprobFormatter(LetterTokenizer()).completion([TokenLogprob(0, float("-inf"), ((1, float("-inf")),))])
    assert out.token_logprobs == [-9999.0]
    assert out.top_logprobs == [{"a": -9999.0, "bb": -9999.0}]


# --- forced tool calls cut short ----------------------------------------------------------------

NAMED = ToolMode("named", function="f")
REQUIRED = ToolMode("required")


def answer(text: str, reason: str) -> Accumulator:
    acc = Accumulator(prompt_tokens=1)
    acc.add(GenerationDelta(text, 3, reason))
    return acc


def test_a_named_call_cut_by_max_tokens_says_length_and_keeps_its_arguments():
    choice = chat_choice(answer('{"city": "Lis', "length"), NAMED, None)
    assert choice.finish_reason == "length"
    assert choice.message.tool_calls[0].function.arguments == '{"city": "Lis'


def test_a_named_call_finished_by_the_model_says_tool_calls():
    assert chat_choice(answer('{"city": "Lisbon"}', "stop"), NAMED, None).finish_reason == "tool_calls"


def test_a_named_call_cut_by_a_stop_string_says_stop():
    assert chat_choice(answer('{"city": "Lis', "stop"), NAMED, None).finish_reason == "stop"


def test_a_required_list_cut_by_max_tokens_gives_no_calls_and_says_length():
    choice = chat_choice(answer('[{"name": "f", "arguments": {"a": ', "length"), REQUIRED, None)
    assert (choice.finish_reason, choice.message.tool_calls, choice.message.content) == ("length", None, None)
    whole = chat_choice(answer('[{"name": "f", "arguments": {"a": 1}}]', "stop"), REQUIRED, None)
    assert whole.finish_reason == "tool_calls" and whole.message.tool_calls[0].function.arguments == '{"a": 1}'


@pytest.mark.parametrize(
    ("mode", "pieces"),
    [(NAMED, ['{"city"', ': "Lis']), (REQUIRED, ['[{"name": "f", ', '"arguments": {"a": '])],
    ids=["named", "required"],
)
def test_a_streamed_forced_call_cut_by_max_tokens_ends_with_length(mode, pieces):
    stream = ChatChoiceStream(0, mode, None)
    chunks = [c for piece in pieces[:-1] for c in stream.feed(GenerationDelta(piece, 1))]
    chunks += stream.feed(GenerationDelta(pieces[-1], 1, "length"))
    assert [c.finish_reason for c in chunks if c.finish_reason] == ["length"]
    assert chunks[-1].finish_reason == "length"
    arguments = "".join(tc.function.arguments for c in chunks for tc in c.delta.tool_calls or [])
    assert arguments == ("".join(pieces) if mode is NAMED else "")


def test_a_streamed_forced_call_the_model_finished_ends_with_tool_calls():
    stream = ChatChoiceStream(0, NAMED, None)
    chunks = stream.feed(GenerationDelta('{"a": ', 1)) + stream.feed(GenerationDelta("1}", 1, "stop"))
    assert chunks[-1].finish_reason == "tool_calls"


# --- StopStringMatcher -----------------------------------------------------------------------


def test_matcher_without_stops_passes_text_through():
    matcher = StopStringMatcher(())
    assert matcher.feed("hello") == ("hello", False)
    assert matcher.flush() == ""


def test_matcher_finds_a_stop_inside_one_delta():
    matcher = StopStringMatcher(("END",))
    assert matcher.feed("abcENDxyz") == ("abc", True)


def test_matcher_finds_a_stop_split_across_deltas():
    matcher = StopStringMatcher(("END",))
    assert matcher.feed("abcE") == ("abc", False)
    assert matcher.feed("N") == ("", False)
    assert matcher.feed("Dxyz") == ("", True)


def test_matcher_releases_held_back_prefix_that_turns_out_not_to_be_a_stop():
    matcher = StopStringMatcher(("END",))
    assert matcher.feed("abcEN") == ("abc", False)
    assert matcher.feed("Ox") == ("ENOx", False)


def test_matcher_holds_back_only_the_part_that_could_still_start_a_stop():
    matcher = StopStringMatcher(("STOP",))
    assert matcher.feed("a ST") == ("a ", False)
    # "STARS" cannot complete "STOP" but its last "S" still could.
    assert matcher.feed("ARS") == ("STAR", False)
    assert matcher.flush() == "S"


def test_matcher_earliest_stop_wins_among_several():
    matcher = StopStringMatcher(("world", "lo"))
    assert matcher.feed("hello world") == ("hel", True)


def test_matcher_earliest_stop_wins_regardless_of_stop_order():
    matcher = StopStringMatcher(("lo", "he"))
    assert matcher.feed("hello") == ("", True)


def test_matcher_flush_releases_a_held_back_partial_stop():
    matcher = StopStringMatcher(("END",))
    assert matcher.feed("abcEN") == ("abc", False)
    assert matcher.flush() == "EN"
    assert matcher.flush() == ""


def test_matcher_output_equals_input_when_no_stop_occurs():
    matcher = StopStringMatcher(("<stop>", "##"))
    deltas = ["a <", "st", "op", "# b", "#", "c <sto", "p"]
    emitted = "".join(matcher.feed(d)[0] for d in deltas) + matcher.flush()
    assert emitted == "".join(deltas)


# --- IncrementalDetokenizer with a real tokenizer -----------------------------------------------


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from transformers import AutoTokenizer

    from serve_app.tools.tiny_models import build_tiny_llm

    model_dir = tmp_path_factory.mktemp("tiny-llm")
    build_tiny_llm(model_dir)
    return AutoTokenizer.from_pretrained(model_dir)


MULTI_BYTE_TEXT = "héllo wörld ✓ 日本 — ok"


def test_detokenizer_deltas_and_flush_equal_the_full_decode(tokenizer):
    ids = tokenizer.encode(MULTI_BYTE_TEXT)
    detokenizer = IncrementalDetokenizer(tokenizer)
    text = "".join(detokenizer.push(i) for i in ids) + detokenizer.flush()
    assert text == tokenizer.decode(ids, skip_special_tokens=True)
    assert text == MULTI_BYTE_TEXT


def test_detokenizer_never_emits_a_partial_character(tokenizer):
    ids = tokenizer.encode(MULTI_BYTE_TEXT)
    detokenizer = IncrementalDetokenizer(tokenizer)
    deltas = [detokenizer.push(i) for i in ids]
    assert all("\ufffd" not in d for d in deltas)


def test_detokenizer_holds_back_a_character_split_across_tokens(tokenizer):
    ids = tokenizer.encode("✓")
    assert len(ids) > 1, "the check mark must span several byte-level tokens for this test"
    detokenizer = IncrementalDetokenizer(tokenizer)
    deltas = [detokenizer.push(i) for i in ids]
    assert deltas[:-1] == [""] * (len(ids) - 1)
    assert deltas[-1] == "✓"


def test_detokenizer_skips_special_tokens(tokenizer):
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    ids = [*tokenizer.encode("ab"), eos]
    detokenizer = IncrementalDetokenizer(tokenizer)
    text = "".join(detokenizer.push(i) for i in ids) + detokenizer.flush()
    assert text == "ab"


def test_detokenizer_flush_emits_an_incomplete_character_at_the_end(tokenizer):
    ids = tokenizer.encode("a✓")
    truncated = ids[:-1]
    detokenizer = IncrementalDetokenizer(tokenizer)
    text = "".join(detokenizer.push(i) for i in truncated) + detokenizer.flush()
    assert text == tokenizer.decode(truncated, skip_special_tokens=True)
    assert text.startswith("a") and text.endswith("\ufffd")


def test_every_engine_setting_is_copied_from_the_protocol_derived_or_the_deployments():
    import dataclasses

    from deployments.llm import openai_mapping
    from deployments.llm.engines.base import SamplingSettings

    names = {f.name for f in dataclasses.fields(SamplingSettings)}
    copied = set(openai_mapping.COPIED_FIELDS)
    assert copied == {"temperature", "top_p", "seed", "presence_penalty", "frequency_penalty", "ignore_eos",
                      "repetition_penalty"}  # fmt: skip
    assert names == copied | openai_mapping.DERIVED_FIELDS | openai_mapping.ENGINE_FIELDS
