"""LLM contracts: OpenAI's chat and text completions, whole and streamed.

These follow the OpenAI API reference field for field, because the users' own OpenAI SDKs
are the clients: a request accepts what those SDKs send, a response parses in them. vLLM's
common sampling extensions (top_k, min_tokens, ignore_eos, repetition_penalty) are accepted
as vLLM accepts them; fields either defines that would change the answer and that this server
does not implement are refused by name (llm_unsupported), never ignored. Limits that depend on
the model (the largest `n`, the longest prompt list, the vocabulary) are the LLM deployment's checks.
`Usage` and `FinishReason` live here (token counts and stop reasons are the LLM's) and the pipelines
that end in an LLM answer reuse them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_serializer, model_validator

from serve_app.protocol.common import (
    INT64_MAX,
    INT64_MIN,
    _Request,
    field_error,
    new_id,
    now,
    schema_rules,
    when,
)
from serve_app.protocol.llm_structured import (
    MAX_TOP_LOGPROBS,
    ChoiceLogprobs,
    CompletionLogprobs,
    ResponseFormat,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
)
from serve_app.protocol.llm_unsupported import UNSUPPORTED_IN_CHAT, UNSUPPORTED_IN_COMPLETIONS, refuse_unsupported

MAX_N = 128  # a hard ceiling; each LLM's configured max_n is usually far lower


class StreamOptions(_Request):
    include_usage: bool = False


# Cross-field rules both LLM requests' schemas state (their validators enforce them).
_STREAM_OPTIONS_NEED_STREAM = when("stream_options", {"type": "object"}, "stream", {"const": True})


class SamplingFields(_Request):
    """Sampling knobs common to chat and text completions."""

    model: str = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    n: int = Field(default=1, ge=1, le=MAX_N, description="Choices per prompt (at most the LLM's max_n).")
    stop: str | list[str] | None = Field(
        default=None,
        json_schema_extra={
            "anyOf": [
                {"type": "string", "minLength": 1},
                {"type": "array", "items": {"type": "string", "minLength": 1}, "maxItems": 4},
                {"type": "null"},
            ]
        },
    )
    seed: int | None = Field(default=None, ge=INT64_MIN, le=INT64_MAX)
    presence_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    stream: bool = False
    stream_options: StreamOptions | None = None
    # vLLM's extensions. top_k: -1 or 0 keep every token.
    top_k: int = Field(default=0, ge=-1)
    min_tokens: int = Field(default=0, ge=0)
    ignore_eos: bool = False
    repetition_penalty: float = Field(default=1.0, gt=0.0, le=2.0)
    user: str | None = Field(default=None, description="The end user: keeps them on one variant of an alias.")
    logit_bias: dict[str, float] | None = Field(
        default=None,
        description="Token id (a string of digits) -> a bias from -100 to 100 added to its logit.",
        json_schema_extra={
            "anyOf": [
                {
                    "type": "object",
                    "propertyNames": {"pattern": "^[0-9]+$"},
                    "additionalProperties": {"type": "number", "minimum": -100, "maximum": 100},
                },
                {"type": "null"},
            ]
        },
    )

    @field_validator("logit_bias")
    @classmethod
    def _bias_token_ids_within_range(cls, bias: dict[str, float] | None) -> dict[str, float] | None:
        for token, value in (bias or {}).items():
            if not (token.isascii() and token.isdigit()):
                raise ValueError(f"logit_bias keys are token ids; got {token!r}")
            if not -100 <= value <= 100:
                raise ValueError(f"logit_bias values lie between -100 and 100; got {value} for {token}")
        return bias

    @field_validator("stop")
    @classmethod
    def _at_most_four_stops(cls, stop: str | list[str] | None) -> str | list[str] | None:
        stops = [stop] if isinstance(stop, str) else stop or []
        if len(stops) > 4:
            raise ValueError("at most 4 stop sequences are allowed")
        if any(s == "" for s in stops):
            raise ValueError("stop sequences must not be empty")
        return stop

    @field_validator("stream_options")
    @classmethod
    def _stream_options_need_stream(cls, options: StreamOptions | None, info: ValidationInfo) -> StreamOptions | None:
        # As OpenAI and vLLM: options for a stream that is not asked for are a client's mistake.
        if options is not None and not info.data.get("stream"):
            raise ValueError("stream_options is only allowed when stream is true")
        return options

    @property
    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    @property
    def include_usage_in_stream(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class TextContentPart(_Request):
    type: Literal["text"]
    text: str


class ChatMessage(_Request):
    model_config = ConfigDict(
        json_schema_extra=schema_rules(
            when("role", {"const": "tool"}, "tool_call_id", {"type": "string", "minLength": 1})
        )
    )

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None  # an assistant's earlier calls
    tool_call_id: str | None = Field(default=None, validate_default=True)  # a tool message answers this call

    @field_validator("tool_call_id")
    @classmethod
    def _tool_messages_name_their_call(cls, value: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("role") == "tool" and not value:
            raise ValueError("a tool message needs the tool_call_id of the call it answers")
        return value

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class ChatCompletionRequest(SamplingFields):
    model_config = ConfigDict(
        json_schema_extra=schema_rules(
            _STREAM_OPTIONS_NEED_STREAM,
            when("top_logprobs", {"type": "integer", "minimum": 1}, "logprobs", {"const": True}),
            when("tool_choice", {"const": "required"}, "tools", {"type": "array", "minItems": 1}),
        )
    )

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)
    response_format: ResponseFormat | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool = True

    @model_validator(mode="before")
    @classmethod
    def _refuse_unsupported(cls, data):
        return refuse_unsupported(cls.__name__, data, UNSUPPORTED_IN_CHAT)

    @field_validator("tools")
    @classmethod
    def _unique_tool_names(cls, tools: list[Tool] | None) -> list[Tool] | None:
        names = [t.function.name for t in tools or []]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"tool names must be unique; repeated: {', '.join(duplicates)}")
        return tools

    @field_validator("tool_choice")
    @classmethod
    def _choice_names_a_given_tool(cls, choice: ToolChoice | None, info: ValidationInfo) -> ToolChoice | None:
        tools = info.data.get("tools") or []
        if isinstance(choice, str) and choice == "required" and not tools:
            raise ValueError("tool_choice 'required' needs tools")
        if not isinstance(choice, str) and choice is not None:
            if choice.function.name not in {t.function.name for t in tools}:
                raise ValueError(f"tool_choice names {choice.function.name!r}, which is not among the tools")
        return choice

    @field_validator("top_logprobs")
    @classmethod
    def _top_logprobs_need_logprobs(cls, top: int | None, info: ValidationInfo) -> int | None:
        if top and not info.data.get("logprobs"):
            raise ValueError("top_logprobs needs logprobs: true")
        return top

    @property
    def effective_tool_choice(self) -> ToolChoice:
        """OpenAI's default: `auto` when tools are given, else `none`."""
        if self.tool_choice is not None:
            return self.tool_choice
        return "auto" if self.tools else "none"

    @model_validator(mode="after")
    def _fold_max_completion_tokens(self) -> ChatCompletionRequest:
        # Newer SDKs send max_completion_tokens; older ones max_tokens. One field downstream.
        if self.max_completion_tokens is not None and self.max_tokens is None:
            self.max_tokens = self.max_completion_tokens
        return self


class CompletionRequest(SamplingFields):
    model_config = ConfigDict(
        json_schema_extra=schema_rules(
            _STREAM_OPTIONS_NEED_STREAM, when("max_tokens", {"const": 0}, "echo", {"const": True})
        )
    )

    prompt: str | list[str] | list[int] | list[list[int]] = Field(
        description="A string, a list of strings, a list of token ids, or a list of token-id lists.",
        json_schema_extra={
            "anyOf": [
                {"type": "string"},
                {"type": "array", "items": {"type": "string"}, "minItems": 1},
                {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1},
                {
                    "type": "array",
                    "items": {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1},
                    "minItems": 1,
                },
            ]
        },
    )
    echo: bool = False
    # 0 only with echo: the prompt is scored (with logprobs), nothing is generated.
    max_tokens: int | None = Field(default=16, ge=0)
    logprobs: int | None = Field(
        default=None,
        ge=0,
        le=MAX_TOP_LOGPROBS,
        description="Each token's logprob and the top N alternatives; with echo, the prompt's tokens too.",
    )
    response_format: ResponseFormat | None = None

    @model_validator(mode="before")
    @classmethod
    def _refuse_unsupported(cls, data):
        return refuse_unsupported(cls.__name__, data, UNSUPPORTED_IN_COMPLETIONS)

    @model_validator(mode="after")
    def _nothing_to_generate_needs_echo(self) -> CompletionRequest:
        # vLLM's rule: without echo, max_tokens 0 would answer nothing at all.
        if self.max_tokens == 0 and not self.echo:
            raise field_error(type(self).__name__, "max_tokens", "max_tokens 0 is allowed only with echo", 0)
        return self

    @field_validator("prompt")
    @classmethod
    def _not_empty(cls, prompt):
        if isinstance(prompt, list) and (not prompt or any(isinstance(p, list) and not p for p in prompt)):
            raise ValueError("prompt must not be empty")
        return prompt

    @property
    def prompts(self) -> list[str | list[int]]:
        """Each prompt: text, or token ids."""
        if isinstance(self.prompt, str):
            return [self.prompt]
        if all(isinstance(p, int) for p in self.prompt):
            return [[p for p in self.prompt if isinstance(p, int)]]
        return [p for p in self.prompt if not isinstance(p, int)]


FinishReason = Literal["stop", "length", "tool_calls"]


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int

    @classmethod
    def of(cls, prompt_tokens: int, completion_tokens: int) -> Usage:
        return cls(
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            total_tokens=prompt_tokens + completion_tokens,
        )


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    refusal: str | None = None  # OpenAI's schema requires it; this server never refuses by itself
    tool_calls: list[ToolCall] | None = None

    @model_serializer(mode="wrap")
    def _omit_absent_tool_calls(self, handler):
        # OpenAI leaves tool_calls out of an answer without calls (refusal stays, as null).
        body = handler(self)
        if body.get("tool_calls") is None:
            body.pop("tool_calls", None)
        return body


class ChatChoice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: FinishReason
    logprobs: ChoiceLogprobs | None = None


class ChatCompletion(BaseModel):
    id: str = Field(default_factory=lambda: new_id("chatcmpl"))
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=now)
    model: str
    choices: list[ChatChoice]
    usage: Usage


class ChunkDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[ToolCallDelta] | None = None

    @model_serializer(mode="wrap")
    def _omit_unset(self, handler):
        # OpenAI sends only what a chunk carries: {"role": ...} first, then {"content": ...}, then {}.
        return {k: v for k, v in handler(self).items() if v is not None}


class ChatChunkChoice(BaseModel):
    index: int = 0
    delta: ChunkDelta
    finish_reason: FinishReason | None = None
    logprobs: ChoiceLogprobs | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChatChunkChoice]
    usage: Usage | None = None


class CompletionChoice(BaseModel):
    index: int = 0
    text: str
    finish_reason: FinishReason | None = None
    logprobs: CompletionLogprobs | None = None


class Completion(BaseModel):
    """A text completion, or (with usage possibly None) one streamed chunk of it."""

    id: str = Field(default_factory=lambda: new_id("cmpl"))
    object: Literal["text_completion"] = "text_completion"
    created: int = Field(default_factory=now)
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None
