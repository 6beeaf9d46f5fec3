"""OpenAI request → (prompt token ids, engine settings), and engine deltas → OpenAI responses.

Pure functions over the protocol types, so both engines share one mapping and
unit tests need neither Ray nor a model. The response's `model` is always a parameter:
one deployment answers for several ids (a base model and its adapters).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from deployments.llm.engines.base import GenerationDelta, GrammarSpec, SamplingSettings, TokenLogprob
from serve_app.errors import ContextLengthExceeded, InvalidRequest
from serve_app.protocol import (
    ChatChunkChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChoiceLogprobs,
    ChunkDelta,
    Completion,
    CompletionChoice,
    CompletionLogprobs,
    CompletionRequest,
    FinishReason,
    SamplingFields,
    TokenLogprobEntry,
    TopLogprob,
    Usage,
)


def chat_prompt_ids(tokenizer: Any, request: ChatCompletionRequest, *, with_tools: bool = True) -> list[int]:
    messages = [_template_message(m) for m in request.messages]
    tools = [t.model_dump(exclude_none=True) for t in request.tools] if request.tools and with_tools else None
    try:
        text = tokenizer.apply_chat_template(messages, tools=tools, add_generation_prompt=True, tokenize=False)
    except Exception as exc:  # jinja raises on conversations its template rejects
        raise InvalidRequest(f"messages rejected by the chat template: {exc}", param="messages") from None
    # The template already wrote every special token; adding them again would double BOS.
    return tokenizer.encode(text, add_special_tokens=False)


def _template_message(message: Any) -> dict[str, Any]:
    # "developer" is OpenAI's newer name for the system role; chat templates know only "system".
    out: dict[str, Any] = {"role": "system" if message.role == "developer" else message.role, "content": message.text()}
    if message.name:
        out["name"] = message.name  # as vLLM hands it on: templates that know participants' names use it
    if message.tool_calls:
        out["tool_calls"] = [call.template_form() for call in message.tool_calls]
    if message.tool_call_id:
        out["tool_call_id"] = message.tool_call_id
    return out


def completion_prompts(
    tokenizer: Any, request: CompletionRequest, vocab_size: int, max_prompts: int
) -> list[list[int]]:
    """Each prompt's token ids; text prompts are tokenized, token-id prompts checked against the vocabulary."""
    prompts = request.prompts
    if len(prompts) > max_prompts:
        raise InvalidRequest(f"at most {max_prompts} prompts per request; got {len(prompts)}", param="prompt")
    ids = []
    for prompt in prompts:
        if isinstance(prompt, str):
            if not prompt:
                raise InvalidRequest("prompt must not be empty", param="prompt")
            ids.append(tokenizer.encode(prompt))
            continue
        outside = [t for t in prompt if not 0 <= t < vocab_size]
        if outside:
            raise InvalidRequest(
                f"token ids outside the vocabulary (0..{vocab_size - 1}): {outside[:5]}", param="prompt"
            )
        ids.append(list(prompt))
    return ids


def check_logit_bias(request: SamplingFields, vocab_size: int) -> None:
    """logit_bias names token ids of this model's vocabulary (the request's own check has their form)."""
    outside = [token for token in request.logit_bias or {} if int(token) >= vocab_size]
    if outside:
        raise InvalidRequest(
            f"logit_bias names token ids outside the vocabulary (0..{vocab_size - 1}): {outside[:5]}",
            param="logit_bias",
        )


# The engine settings named as the protocol's sampling fields, taken as the request gives them: derived from
# the two definitions, so a field added to both is carried without a third list to keep in step. The rest
# are converted here (DERIVED_FIELDS) or set by the deployment (ENGINE_FIELDS: the grammar, the adapter).
DERIVED_FIELDS = frozenset({"max_tokens", "stop", "top_k", "min_tokens", "logit_bias", "logprobs", "prompt_logprobs"})
ENGINE_FIELDS = frozenset({"grammar", "adapter"})
COPIED_FIELDS = tuple(
    f.name
    for f in dataclasses.fields(SamplingSettings)
    if f.name in SamplingFields.model_fields and f.name not in DERIVED_FIELDS
)


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
        **{name: getattr(request, name) for name in COPIED_FIELDS},
        max_tokens=max_tokens,
        stop=tuple(request.stop_list),
        top_k=max(request.top_k, 0),
        min_tokens=min(request.min_tokens, max_tokens),
        logit_bias=tuple((int(token), bias) for token, bias in (request.logit_bias or {}).items()),
        logprobs=_requested_logprobs(request),
        prompt_logprobs=_requested_prompt_logprobs(request),
    )


def _requested_logprobs(request: SamplingFields) -> int | None:
    if isinstance(request, ChatCompletionRequest):
        return (request.top_logprobs or 0) if request.logprobs else None
    return getattr(request, "logprobs", None)


def _requested_prompt_logprobs(request: SamplingFields) -> int | None:
    # OpenAI's legacy completions and vLLM: with echo, logprobs cover the echoed prompt's tokens too.
    if isinstance(request, CompletionRequest) and request.echo:
        return request.logprobs
    return None


def choice_settings(settings: SamplingSettings, index: int, grammar: GrammarSpec | None = None) -> SamplingSettings:
    """Choice `index` of n: its own seed (seed + index), so the n choices differ and each reproduces."""
    seed = settings.seed + index if settings.seed is not None else None
    return replace(settings, seed=seed, grammar=grammar if grammar is not None else settings.grammar)


@dataclass
class Accumulator:
    """Sums one choice's streamed deltas into what its final response or usage chunk needs."""

    prompt_tokens: int
    index: int = 0
    parts: list[str] = field(default_factory=list)
    completion_tokens: int = 0
    finish_reason: FinishReason | None = None
    logprobs: list[TokenLogprob] = field(default_factory=list)
    prompt_logprobs: list[TokenLogprob] = field(default_factory=list)

    def add(self, delta: GenerationDelta) -> None:
        self.parts.append(delta.text)
        self.completion_tokens += delta.new_tokens
        self.logprobs.extend(delta.logprobs)
        self.prompt_logprobs.extend(delta.prompt_logprobs)
        if delta.finish_reason is not None:
            self.finish_reason = delta.finish_reason

    @property
    def text(self) -> str:
        return "".join(self.parts)

    @property
    def usage(self) -> Usage:
        return Usage.of(self.prompt_tokens, self.completion_tokens)


def total_usage(prompt_tokens: int, accs: list[Accumulator]) -> Usage:
    """OpenAI counts each prompt once, however many choices it has."""
    return Usage.of(prompt_tokens, sum(a.completion_tokens for a in accs))


# --- logprobs, in OpenAI's two shapes ------------------------------------------------------------


class LogprobFormatter:
    def __init__(self, tokenizer: Any):
        self._tokenizer = tokenizer

    def token(self, token_id: int) -> str:
        return self._tokenizer.decode([token_id])

    def chat(self, entries: list[TokenLogprob] | tuple[TokenLogprob, ...]) -> ChoiceLogprobs:
        return ChoiceLogprobs(
            content=[
                TokenLogprobEntry(
                    # A chat answer's tokens are generated ones: each has its logprob (only a prompt's first lacks one).
                    **self._top(e.token_id, e.logprob or 0.0).model_dump(),
                    top_logprobs=[self._top(tid, lp) for tid, lp in e.top],
                )
                for e in entries
            ]
        )

    def completion(self, entries: Sequence[TokenLogprob], offset: int = 0) -> CompletionLogprobs:
        """The legacy shape, as vLLM writes it: each token's top_logprobs holds the token itself (OpenAI:
        "up to logprobs+1 elements") then the top ones; the first prompt token, which nothing predicts,
        has null for both. Offsets add up the tokens' lengths from `offset`."""
        out = CompletionLogprobs()
        for e in entries:
            token = self.token(e.token_id)
            out.tokens.append(token)
            out.text_offset.append(offset)
            offset += len(token)
            if e.logprob is None:
                out.token_logprobs.append(None)
                out.top_logprobs.append(None)
                continue
            out.token_logprobs.append(_finite(e.logprob))
            top = {token: _finite(e.logprob)}
            for tid, lp in e.top:
                top.setdefault(self.token(tid), _finite(lp))
            out.top_logprobs.append(top)
        return out

    def _top(self, token_id: int, logprob: float) -> TopLogprob:
        token = self.token(token_id)
        return TopLogprob(token=token, logprob=_finite(logprob), bytes=list(token.encode("utf-8")))


def _finite(logprob: float) -> float:
    # JSON has no -Infinity: OpenAI and vLLM write a token that cannot occur as -9999.0.
    return max(logprob, -9999.0)


# --- response shapes -----------------------------------------------------------------------------


def chat_chunk(
    base: ChatCompletion,
    delta: ChunkDelta,
    finish_reason: FinishReason | None = None,
    index: int = 0,
    logprobs: ChoiceLogprobs | None = None,
) -> ChatCompletionChunk:
    return ChatCompletionChunk(
        id=base.id,
        created=base.created,
        model=base.model,
        choices=[ChatChunkChoice(index=index, delta=delta, finish_reason=finish_reason, logprobs=logprobs)],
    )


def chat_usage_chunk(base: ChatCompletion, usage: Usage) -> ChatCompletionChunk:
    return ChatCompletionChunk(id=base.id, created=base.created, model=base.model, choices=[], usage=usage)


def completion_choice(acc: Accumulator, echo: str = "", logprobs: CompletionLogprobs | None = None) -> CompletionChoice:
    """One finished completion choice: the echoed prompt (when asked for), then what was generated."""
    return CompletionChoice(index=acc.index, text=echo + acc.text, finish_reason=acc.finish_reason, logprobs=logprobs)


def completion_chunk(
    base: Completion,
    text: str,
    finish_reason: FinishReason | None = None,
    index: int = 0,
    logprobs: CompletionLogprobs | None = None,
) -> Completion:
    return Completion(
        id=base.id,
        created=base.created,
        model=base.model,
        choices=[CompletionChoice(index=index, text=text, finish_reason=finish_reason, logprobs=logprobs)],
    )


def completion_usage_chunk(base: Completion, usage: Usage) -> Completion:
    return Completion(id=base.id, created=base.created, model=base.model, choices=[], usage=usage)
