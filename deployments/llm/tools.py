"""A chat request's structure: which grammar constrains it, and how its text becomes tool calls.

`response_format` and forced tool choices become a grammar (`GrammarSpec`), so both engines
constrain the same way: the CPU engine through xgrammar, vLLM through its structured
outputs. A named function constrains the text to its arguments; `required` to a JSON list
of `{"name", "arguments"}` calls, as vLLM does; `auto` is read back by the family's parser.
Schemas are checked here with xgrammar's converter (vLLM's default backend too), so an
unsupported one is a 400 naming its param before any generation starts. A text completion's
`response_format` constrains its text the same way (`format_grammar`).

A forced call cut short (by max_tokens, or a stop string) ends as OpenAI and vLLM end it: its
finish_reason is the cut's ("length"), never "tool_calls", so a client can tell; a named call
keeps the arguments written so far, a `required` list that no longer parses gives no calls.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from deployments.llm.engines.base import GrammarSpec
from deployments.llm.tool_parsers import ToolParser, to_tool_call
from serve_app.errors import InvalidRequest
from serve_app.protocol import ChatCompletionRequest, FinishReason, FunctionCall, ResponseFormat, ToolCall


@dataclass(frozen=True)
class ToolMode:
    kind: Literal["none", "auto", "required", "named"]
    function: str | None = None  # the named function
    parser: ToolParser | None = None  # auto's

    def calls_from(self, text: str) -> tuple[str | None, list[ToolCall]]:
        """(content, tool calls) from a whole answer."""
        if self.kind == "named":
            return None, [ToolCall(function=FunctionCall(name=self.function, arguments=text))]
        if self.kind == "required":
            # The grammar makes the text a list of calls: it fails to parse only when it was cut short.
            return None, _calls_from_list(text)
        if self.kind == "auto" and self.parser is not None:
            return self.parser.parse(text)
        return text, []

    def finish_reason(self, engine_reason: FinishReason | None, calls: list[ToolCall]) -> FinishReason | None:
        """ "tool_calls" when the model finished its calls itself; else why the generation ended."""
        if not calls or engine_reason != "stop":
            return engine_reason
        if self.kind == "named" and not _is_json(calls[0].function.arguments):
            return engine_reason  # a stop string cut the arguments
        return "tool_calls"


def tool_mode(request: ChatCompletionRequest, parser: ToolParser | None) -> ToolMode:
    choice = request.effective_tool_choice
    if not isinstance(choice, str):
        return ToolMode("named", function=choice.function.name)
    if choice == "auto" and parser is None:
        raise InvalidRequest(
            "tool_choice 'auto' needs a tool-call parser for this model family, and none is registered; "
            "use tool_choice 'required' or a named function",
            param="tool_choice",
        )
    return ToolMode(choice, parser=parser if choice == "auto" else None)


def grammar_for(request: ChatCompletionRequest, mode: ToolMode) -> GrammarSpec | None:
    if mode.kind == "named":
        index, tool = next((i, t) for i, t in enumerate(request.tools or []) if t.function.name == mode.function)
        schema = tool.function.parameters_schema
        _check_supported(schema, f"tools.{index}.function.parameters")
        return GrammarSpec("json_schema", json.dumps(schema))
    if mode.kind == "required":
        for index, tool in enumerate(request.tools or []):
            _check_supported(tool.function.parameters_schema, f"tools.{index}.function.parameters")
        return GrammarSpec("json_schema", json.dumps(_calls_schema(request, request.parallel_tool_calls)))
    return format_grammar(request.response_format)


def format_grammar(fmt: ResponseFormat | None) -> GrammarSpec | None:
    """The grammar of a `response_format` (chat's or a text completion's); None for plain text."""
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return GrammarSpec("json_object")
    assert fmt.json_schema is not None  # ResponseFormat requires it for type json_schema
    schema = fmt.json_schema.schema_
    _check_supported(schema, "response_format.json_schema.schema")
    return GrammarSpec("json_schema", json.dumps(schema))


def _calls_schema(request: ChatCompletionRequest, parallel: bool) -> dict[str, Any]:
    one_of_the_tools = {
        "anyOf": [
            {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "enum": [t.function.name]},
                    "arguments": t.function.parameters_schema,
                },
                "required": ["name", "arguments"],
            }
            for t in request.tools or []
        ]
    }
    schema: dict[str, Any] = {"type": "array", "minItems": 1, "items": one_of_the_tools}
    if not parallel:
        schema["maxItems"] = 1
    return schema


def _calls_from_list(text: str) -> list[ToolCall]:
    try:
        items = json.loads(text)
    except json.JSONDecodeError:
        return []
    if not isinstance(items, list):
        return []
    calls = [to_tool_call(json.dumps(item)) for item in items]
    parsed = [c for c in calls if c is not None]
    return parsed if parsed and len(parsed) == len(calls) else []


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return False
    return True


def _check_supported(schema: dict[str, Any], param: str) -> None:
    import xgrammar

    try:
        xgrammar.Grammar.from_json_schema(json.dumps(schema))
    except Exception as exc:  # xgrammar raises RuntimeError with the converter's reason
        # Drop the converter's "[time] file.cc:line: " prefix: the reason is what the client can act on.
        reason = re.sub(r"^\[[^\]]*\]\s*\S+:\d+:\s*", "", str(exc).strip()) or type(exc).__name__
        raise InvalidRequest(f"unsupported JSON Schema: {reason}", param=param) from None
