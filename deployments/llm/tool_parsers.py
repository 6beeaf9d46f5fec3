"""Tool calls in a model's own output format → OpenAI tool calls, one parser per model family.

`tool_choice: auto` lets the model decide, so its calls come back in the format its chat
template taught it; each family's format gets a parser here, found by the model's
`model_type`. Forced calls (`required`, a named function) need none: a grammar makes the
model write the call as JSON directly (see `tools`).
"""

from __future__ import annotations

import json
import re
from typing import Protocol

from serve_app.protocol import FunctionCall, ToolCall


class ToolParser(Protocol):
    def parse(self, text: str) -> tuple[str | None, list[ToolCall]]:
        """(the content outside the calls, or None when empty; the calls), from a whole answer."""
        ...

    def streaming(self) -> StreamingToolParser: ...


class StreamingToolParser(Protocol):
    def feed(self, text: str) -> tuple[str, list[ToolCall]]:
        """Content safe to stream now, and the calls completed by this text."""
        ...

    def finish(self) -> tuple[str, list[ToolCall]]:
        """Whatever is still held back once the generation ended."""
        ...


class HermesToolParser:
    """`<tool_call>{"name": ..., "arguments": {...}}</tool_call>`, as Qwen2.5 (and Hermes) models write calls."""

    OPEN, CLOSE = "<tool_call>", "</tool_call>"
    _CALL = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)

    def parse(self, text: str) -> tuple[str | None, list[ToolCall]]:
        calls = []
        for match in self._CALL.finditer(text):
            call = to_tool_call(match.group(1))
            if call is None:
                return text or None, []  # a malformed call: the answer stays prose, as the model wrote it
            calls.append(call)
        content = self._CALL.sub("", text).strip() if calls else text
        return content or None, calls

    def streaming(self) -> _HermesStream:
        return _HermesStream(self)


class _HermesStream:
    def __init__(self, parser: HermesToolParser):
        self._parser = parser
        self._buffer = ""  # text from a `<tool_call>` (or a prefix of one) on, not yet streamed

    def feed(self, text: str) -> tuple[str, list[ToolCall]]:
        self._buffer += text
        content, calls = "", []
        while self._buffer:
            start = self._buffer.find(HermesToolParser.OPEN)
            if start < 0:
                keep = _partial_suffix(self._buffer, HermesToolParser.OPEN)
                content += self._buffer[: len(self._buffer) - keep]
                self._buffer = self._buffer[len(self._buffer) - keep :]
                break
            content += self._buffer[:start]
            self._buffer = self._buffer[start:]
            end = self._buffer.find(HermesToolParser.CLOSE)
            if end < 0:
                break
            block = self._buffer[: end + len(HermesToolParser.CLOSE)]
            self._buffer = self._buffer[len(block) :]
            _, found = self._parser.parse(block)
            if found:
                calls.extend(found)
            else:
                content += block
        return content, calls

    def finish(self) -> tuple[str, list[ToolCall]]:
        rest, self._buffer = self._buffer, ""
        return rest, []


def to_tool_call(payload: str) -> ToolCall | None:
    """One `{"name": ..., "arguments": {...}}` object as an OpenAI tool call (arguments as a JSON string)."""
    try:
        data = json.loads(payload)
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        return None
    arguments = data.get("arguments", data.get("parameters", {}))
    return ToolCall(function=FunctionCall(name=data["name"], arguments=json.dumps(arguments, ensure_ascii=False)))


def _partial_suffix(text: str, marker: str) -> int:
    """Length of the longest end of `text` that could begin `marker`."""
    for size in range(min(len(marker) - 1, len(text)), 0, -1):
        if text.endswith(marker[:size]):
            return size
    return 0


PARSERS: dict[str, type] = {"qwen2": HermesToolParser, "qwen3": HermesToolParser, "qwen2_5": HermesToolParser}


def parser_for(model_type: str | None) -> ToolParser | None:
    """The parser for a model family (its config's `model_type`), or None when no parser knows it."""
    cls = PARSERS.get(model_type or "")
    return cls() if cls is not None else None
