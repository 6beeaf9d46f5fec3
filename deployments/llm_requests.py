"""OpenAI request → (prompt token ids, engine settings), and engine deltas → OpenAI responses.

Pure functions over the protocol types, so both engines share one mapping and
unit tests need neither Ray nor a model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from deployments.engines.base import GenerationDelta, SamplingSettings
from serve_app.errors import ContextLengthExceeded, InvalidRequest
from serve_app.protocol import (
    AssistantMessage,
    ChatChoice,
    ChatChunkChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChunkDelta,
    Completion,
    CompletionChoice,
    CompletionRequest,
    SamplingFields,
    Usage,
)


def chat_prompt_ids(tokenizer: Any, request: ChatCompletionRequest) -> list[int]:
    messages = [{"role": _template_role(m.role), "content": m.text()} for m in request.messages]
    try:
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    except Exception as exc:  # jinja raises on conversations its template rejects
        raise InvalidRequest(f"messages rejected by the chat template: {exc}", param="messages") from None
    # The template already wrote every special token; adding them again would double BOS.
    return tokenizer.encode(text, add_special_tokens=False)


def _template_role(role: str) -> str:
    # "developer" is OpenAI's newer name for the system role; chat templates know only "system".
    return "system" if role == "developer" else role


def completion_prompt_ids(tokenizer: Any, request: CompletionRequest) -> list[int]:
    if not request.prompt_text:
        raise InvalidRequest("prompt must not be empty", param="prompt")
    return tokenizer.encode(request.prompt_text)


def sampling_settings(
    request: SamplingFields, prompt_tokens: int, max_model_len: int, prompt_param: str
) -> SamplingSettings:
    room = max_model_len - prompt_tokens
    max_tokens = request.max_tokens if request.max_tokens is not None else room
    if max_tokens > room or room < 1:
        raise ContextLengthExceeded(
            f"This model's maximum context length is {max_model_len} tokens. However, you "
            f"requested {prompt_tokens + max(max_tokens, 1)} tokens ({prompt_tokens} in the "
            f"{prompt_param}, {max(max_tokens, 1)} in the completion). Please reduce the length "
            f"of the {prompt_param} or completion.",
            param=prompt_param,
        )
    return SamplingSettings(
        max_tokens=max_tokens,
        temperature=request.temperature,
        top_p=request.top_p,
        stop=tuple(request.stop_list),
        seed=request.seed,
        presence_penalty=request.presence_penalty,
        frequency_penalty=request.frequency_penalty,
    )


@dataclass
class Accumulator:
    """Sums streamed deltas into the totals a final response or usage chunk needs."""

    prompt_tokens: int
    parts: list[str] = field(default_factory=list)
    completion_tokens: int = 0
    finish_reason: str | None = None

    def add(self, delta: GenerationDelta) -> None:
        self.parts.append(delta.text)
        self.completion_tokens += delta.new_tokens
        if delta.finish_reason is not None:
            self.finish_reason = delta.finish_reason

    @property
    def text(self) -> str:
        return "".join(self.parts)

    @property
    def usage(self) -> Usage:
        return Usage.of(self.prompt_tokens, self.completion_tokens)


def chat_completion(model: str, acc: Accumulator) -> ChatCompletion:
    return ChatCompletion(
        model=model,
        choices=[ChatChoice(message=AssistantMessage(content=acc.text), finish_reason=acc.finish_reason)],
        usage=acc.usage,
    )


def chat_chunk(base: ChatCompletion, delta: ChunkDelta, finish_reason: str | None = None) -> ChatCompletionChunk:
    return ChatCompletionChunk(
        id=base.id,
        created=base.created,
        model=base.model,
        choices=[ChatChunkChoice(delta=delta, finish_reason=finish_reason)],
    )


def chat_usage_chunk(base: ChatCompletion, usage: Usage) -> ChatCompletionChunk:
    return ChatCompletionChunk(id=base.id, created=base.created, model=base.model, choices=[], usage=usage)


def text_completion(model: str, acc: Accumulator, echo_prefix: str = "") -> Completion:
    return Completion(
        model=model,
        choices=[CompletionChoice(text=echo_prefix + acc.text, finish_reason=acc.finish_reason)],
        usage=acc.usage,
    )


def completion_chunk(base: Completion, text: str, finish_reason: str | None = None) -> Completion:
    return Completion(
        id=base.id,
        created=base.created,
        model=base.model,
        choices=[CompletionChoice(text=text, finish_reason=finish_reason)],
    )


def completion_usage_chunk(base: Completion, usage: Usage) -> Completion:
    return Completion(id=base.id, created=base.created, model=base.model, choices=[], usage=usage)
