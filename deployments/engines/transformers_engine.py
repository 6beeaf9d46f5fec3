"""CPU engine: real token-by-token generation with transformers.

`model.generate()` samples from torch's global RNG, so two requests in flight
would perturb each other's seeded output. This engine runs its own decode loop
instead: one KV cache and one `torch.Generator` per request, each forward pass
in a worker thread, so concurrent requests interleave step by step and a seed
reproduces the same text whatever else is running.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from deployments.engines.base import (
    GenerationDelta,
    IncrementalDetokenizer,
    SamplingSettings,
    StopStringMatcher,
)
from deployments.engines.lora import PeftAdapters
from serve_app.config import LLMConfig

_DTYPES = {"auto": "float32", "float16": "float16", "bfloat16": "bfloat16", "float32": "float32"}


class TransformersEngine:
    name = "transformers"

    def __init__(self, model: Any, tokenizer: Any, max_model_len: int, adapters: bool = False):
        self.tokenizer = tokenizer
        self.max_model_len = max_model_len
        self._eos_ids = _eos_ids(model, tokenizer)
        self._adapters = PeftAdapters(model, enabled=adapters)

    @property
    def model(self) -> Any:
        return self._adapters.base

    @classmethod
    def create(cls, model_dir: Path, config: LLMConfig) -> TransformersEngine:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if config.cpu_threads:
            torch.set_num_threads(config.cpu_threads)
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, _DTYPES[config.dtype])).eval()
        native_len = model.config.max_position_embeddings
        if config.max_model_len and config.max_model_len > native_len:
            raise ValueError(
                f"llm.max_model_len={config.max_model_len} exceeds the model's max_position_embeddings={native_len}"
            )
        return cls(model, tokenizer, config.max_model_len or native_len, adapters=bool(config.adapters))

    async def generate(
        self, prompt_ids: list[int], settings: SamplingSettings, request_id: str
    ) -> AsyncIterator[GenerationDelta]:
        decoding = _Decoding(self._adapters, prompt_ids, settings)
        detokenizer = IncrementalDetokenizer(self.tokenizer)
        matcher = StopStringMatcher(settings.stop)
        unreported = 0
        for _ in range(settings.max_tokens):
            token = await asyncio.to_thread(decoding.step)
            unreported += 1
            if token in self._eos_ids:
                yield _last_delta(matcher, detokenizer.flush(), unreported, "stop")
                return
            text, stopped = matcher.feed(detokenizer.push(token))
            if stopped:
                yield GenerationDelta(text, unreported, "stop")
                return
            if text:
                yield GenerationDelta(text, unreported)
                unreported = 0
        yield _last_delta(matcher, detokenizer.flush(), unreported, "length")

    async def check_health(self) -> None:
        # A one-token forward pass: proves the weights are loaded and torch still runs.
        await asyncio.to_thread(self._probe)

    async def load_adapter(self, name: str, path: Path) -> None:
        await asyncio.to_thread(self._adapters.load, name, path)

    async def unload_adapter(self, name: str) -> None:
        await asyncio.to_thread(self._adapters.unload, name)

    def _probe(self) -> None:
        import torch

        with torch.inference_mode(), self._adapters.lock:
            model = self._adapters.model
            model(input_ids=torch.tensor([[self._eos_ids[0]]]), **self._adapters.forward_kwargs([None]))

    def shutdown(self) -> None:
        """Nothing outlives the replica's Python objects."""


class _Decoding:
    """The per-request state of one generation: KV cache, RNG, penalty counts."""

    def __init__(self, adapters: PeftAdapters, prompt_ids: list[int], settings: SamplingSettings):
        import torch
        from transformers import DynamicCache

        model = adapters.base
        self._torch = torch
        self._adapters = adapters
        self._settings = settings
        self._cache = DynamicCache(config=model.config)
        self._next_input = torch.tensor([prompt_ids], dtype=torch.long)
        seed = settings.seed if settings.seed is not None else random.getrandbits(63)
        self._rng = torch.Generator().manual_seed(seed)
        self._counts = torch.zeros(model.config.vocab_size, dtype=torch.float32)

    def step(self) -> int:
        torch = self._torch
        # inference_mode is thread-local: it must be entered in the worker thread.
        with torch.inference_mode(), self._adapters.lock:
            out = self._adapters.model(
                input_ids=self._next_input,
                past_key_values=self._cache,
                use_cache=True,
                **self._adapters.forward_kwargs([self._settings.adapter]),
            )
        with torch.inference_mode():
            token = self._sample(out.logits[0, -1, :].float())
        self._next_input = torch.tensor([[token]], dtype=torch.long)
        self._counts[token] += 1
        return token

    def _sample(self, logits: Any) -> int:
        torch = self._torch
        s = self._settings
        # OpenAI's penalties, over the tokens generated so far (as vLLM applies them).
        if s.frequency_penalty or s.presence_penalty:
            logits = logits - s.frequency_penalty * self._counts - s.presence_penalty * (self._counts > 0)
        if s.temperature == 0.0:
            return int(torch.argmax(logits))
        scores = logits / s.temperature
        if s.top_p < 1.0:
            from transformers import TopPLogitsWarper

            scores = TopPLogitsWarper(top_p=s.top_p)(None, scores[None, :])[0]
        probs = torch.softmax(scores, dim=-1)
        return int(torch.multinomial(probs, num_samples=1, generator=self._rng))


def _last_delta(matcher: StopStringMatcher, text: str, unreported: int, reason: str) -> GenerationDelta:
    emitted, stopped = matcher.feed(text)
    if not stopped:
        emitted += matcher.flush()
    return GenerationDelta(emitted, unreported, "stop" if stopped else reason)


def _eos_ids(model: Any, tokenizer: Any) -> list[int]:
    configured = model.generation_config.eos_token_id
    ids = configured if isinstance(configured, list) else [configured]
    ids = [i for i in ids if i is not None]
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids
