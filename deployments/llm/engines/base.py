"""The one small protocol every LLM engine implements.

The LLM deployment tokenizes and validates a request once, then hands the
engine token ids and engine-neutral sampling settings; the engine streams back
text deltas. Keeping tokenization outside the engine makes `usage` identical
whichever engine runs.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from serve_app.config import LLMConfig

FinishReason = Literal["stop", "length"]

# What an engine can do beyond plain sampling; the deployment answers 400 for a request that needs more.
STRUCTURED_OUTPUTS = "structured_outputs"
LOGPROBS = "logprobs"
LORA = "lora"


@dataclass(frozen=True)
class GrammarSpec:
    """A constraint on the generated text: any JSON object, or JSON matching a schema (as a JSON string)."""

    kind: Literal["json_object", "json_schema"]
    schema: str | None = None


@dataclass(frozen=True)
class SamplingSettings:
    max_tokens: int  # 0: the prompt is only scored (prompt_logprobs), nothing is generated
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    # vLLM's extensions, with its meanings: top_k 0 = all tokens; the repetition penalty
    # scales the logits of tokens already in the prompt or output (1.0 = off).
    top_k: int = 0
    min_tokens: int = 0
    ignore_eos: bool = False
    repetition_penalty: float = 1.0
    logit_bias: tuple[tuple[int, float], ...] = ()  # OpenAI's: (token id, bias) added to its logit
    # None: no logprobs; k: the sampled token's logprob and the k most likely (raw model logprobs).
    logprobs: int | None = None
    # None: none; k: each prompt token's logprob given the tokens before it, and the k most likely there.
    prompt_logprobs: int | None = None
    grammar: GrammarSpec | None = None
    adapter: str | None = None  # a LoRA adapter the engine has loaded (load_adapter); None: the base model


@dataclass(frozen=True)
class TokenLogprob:
    token_id: int
    logprob: float | None  # None only for the first prompt token: nothing before it predicts it
    top: tuple[tuple[int, float], ...] = ()  # (token id, logprob), most likely first


@dataclass(frozen=True)
class GenerationDelta:
    text: str
    new_tokens: int
    finish_reason: FinishReason | None = None
    logprobs: tuple[TokenLogprob, ...] = ()  # one per new token when logprobs were asked for
    # One per prompt token when prompt_logprobs were asked for, carried by the generation's first delta.
    prompt_logprobs: tuple[TokenLogprob, ...] = ()


class Engine(Protocol):
    name: str
    max_model_len: int
    vocab_size: int
    capabilities: frozenset[str]
    tokenizer: Any  # a transformers PreTrainedTokenizerBase, shared by both engines

    def generate(
        self, prompt_ids: list[int], settings: SamplingSettings, request_id: str
    ) -> AsyncGenerator[GenerationDelta, None]:
        """Stream deltas; the last one carries finish_reason. Closing the generator (aclose) aborts."""
        ...

    async def check_health(self) -> None:
        """Raise if the engine cannot serve; Serve restarts the replica then."""
        ...

    async def load_adapter(self, name: str, path: Path) -> None:
        """Make the LoRA adapter at `path` usable as `SamplingSettings.adapter = name`."""
        ...

    async def unload_adapter(self, name: str) -> None:
        """Free what the adapter holds; no generation uses it any more."""
        ...

    def shutdown(self) -> None: ...


# How the LLM deployment makes its engine: (its config, the model's directory) -> an Engine. The
# deployment takes one as a parameter, so tests hand it a fake engine without patching a module.
EngineFactory = Callable[["LLMConfig", Path], Engine]


class StopStringMatcher:
    """Finds stop strings in streamed text without emitting a partial match.

    Text that could be the start of a stop string is held back until the next
    delta shows whether it completes one, so a streamed answer never contains
    text that the non-streamed answer would not.
    """

    def __init__(self, stops: tuple[str, ...]):
        self._stops = stops
        self._pending = ""

    def feed(self, text: str) -> tuple[str, bool]:
        """Return (text safe to emit, whether a stop string was hit)."""
        buffer = self._pending + text
        hits = [i for i in (buffer.find(s) for s in self._stops) if i >= 0]
        if hits:
            self._pending = ""
            return buffer[: min(hits)], True
        keep = self._longest_stop_prefix_suffix(buffer)
        self._pending = buffer[len(buffer) - keep :] if keep else ""
        return buffer[: len(buffer) - keep], False

    def flush(self) -> str:
        pending, self._pending = self._pending, ""
        return pending

    def _longest_stop_prefix_suffix(self, buffer: str) -> int:
        longest = 0
        for stop in self._stops:
            for size in range(min(len(stop) - 1, len(buffer)), longest, -1):
                if buffer.endswith(stop[:size]):
                    longest = size
                    break
        return longest


class IncrementalDetokenizer:
    """Turns a growing list of token ids into text deltas.

    Byte-level BPE can split one character across tokens; decoding such a prefix
    yields U+FFFD, so text ending in it is held back until the character completes.
    """

    def __init__(self, tokenizer: Any):
        self._tokenizer = tokenizer
        self._ids: list[int] = []
        self._emitted = 0

    def push(self, token_id: int) -> str:
        self._ids.append(token_id)
        text = self._tokenizer.decode(self._ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):
            return ""
        delta, self._emitted = text[self._emitted :], len(text)
        return delta

    def flush(self) -> str:
        """Whatever is still held back, complete or not: the generation has ended."""
        text = self._tokenizer.decode(self._ids, skip_special_tokens=True)
        delta, self._emitted = text[self._emitted :], len(text)
        return delta
