"""Qwen2.5's `<tool_call>` format → OpenAI tool calls, whole and streamed."""

from __future__ import annotations

import json

import pytest

from deployments.llm.tool_parsers import HermesToolParser, parser_for

CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Lisbon"}}\n</tool_call>'


def test_the_registry_knows_qwen_and_nothing_it_cannot_parse():
    assert isinstance(parser_for("qwen2"), HermesToolParser)
    assert parser_for("gpt_neox") is None


def test_a_call_and_the_prose_around_it():
    content, calls = HermesToolParser().parse(f"Let me check.\n{CALL}")
    assert content == "Let me check."
    assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == [("get_weather", {"city": "Lisbon"})]


def test_two_calls_and_no_prose():
    content, calls = HermesToolParser().parse(CALL + "\n" + CALL.replace("Lisbon", "Porto"))
    assert content is None
    assert [json.loads(c.function.arguments)["city"] for c in calls] == ["Lisbon", "Porto"]
    assert calls[0].id != calls[1].id


@pytest.mark.parametrize("text", ["just prose", "<tool_call>{not json}</tool_call>", "<tool_call>[1]</tool_call>"])
def test_no_valid_call_leaves_the_text_as_content(text):
    assert HermesToolParser().parse(text) == (text, [])


@pytest.mark.parametrize("size", [1, 3, 7, 50])
def test_streamed_in_any_pieces_the_call_comes_out_whole_and_the_prose_streams(size):
    text = f"Sure. {CALL} done"
    stream = HermesToolParser().streaming()
    content, calls = "", []
    for start in range(0, len(text), size):
        piece, found = stream.feed(text[start : start + size])
        assert "<tool" not in piece
        content += piece
        calls += found
    rest, _ = stream.finish()
    assert (content + rest) == "Sure.  done"
    assert [c.function.name for c in calls] == ["get_weather"]


def test_an_unclosed_call_is_released_as_text_at_the_end():
    stream = HermesToolParser().streaming()
    content, calls = stream.feed('<tool_call>{"name": "f"')
    assert (content, calls) == ("", [])
    assert stream.finish() == ('<tool_call>{"name": "f"', [])


def test_an_auto_choice_streams_prose_then_the_call_with_finish_reason_tool_calls():
    from deployments.llm.choices import ChatChoiceStream, chat_choice
    from deployments.llm.engines.base import GenerationDelta
    from deployments.llm.openai_mapping import Accumulator
    from deployments.llm.tools import ToolMode

    mode = ToolMode("auto", parser=HermesToolParser())
    stream = ChatChoiceStream(0, mode, None)
    text = f"Sure. {CALL}"
    pieces = [text[i : i + 5] for i in range(0, len(text), 5)]
    deltas = [GenerationDelta(p, 1) for p in pieces[:-1]] + [GenerationDelta(pieces[-1], 1, "stop")]
    chunks = [c for d in deltas for c in stream.feed(d)]
    assert "".join(c.delta.content or "" for c in chunks) == "Sure. "
    calls = [tc for c in chunks for tc in c.delta.tool_calls or []]
    assert [(tc.index, tc.function.name) for tc in calls] == [(0, "get_weather")]
    assert chunks[-1].finish_reason == "tool_calls"

    acc = Accumulator(prompt_tokens=1)
    for d in deltas:
        acc.add(d)
    choice = chat_choice(acc, mode, None)
    assert choice.finish_reason == "tool_calls" and choice.message.content == "Sure."
