"""The LLM deployment: OpenAI chat and text completions over a pluggable engine.

Callable from the ingress and from notebooks alike:

    llm = serve.get_deployment_handle("LLM", app_name="default")
    reply = await llm.chat.remote({"model": "tiny-qwen2", "messages": [...]})
    async for chunk in llm.options(stream=True).chat_stream.remote(request): ...
    adapter = llm.options(multiplexed_model_id="tiny-qwen2-lora-a")  # to a replica holding it

One deployment per entry of `llms:`, named by the entry (LLMConfig.deployment_name). It answers
its base model's id and each of its adapters' ids; the response's `model` is the id asked for.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from ray import serve

from deployments import llm_requests as mapping
from deployments.base import ModelDeployment
from deployments.engines.base import GenerationDelta, SamplingSettings
from deployments.gpu_budget import vllm_memory_utilization
from deployments.llm_adapters import Adapters
from serve_app import metrics
from serve_app.config import LLMConfig
from serve_app.errors import NotFound, RequestT, parse_request
from serve_app.gpu_plan import GPUClaim
from serve_app.protocol import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChunkDelta,
    Completion,
    CompletionRequest,
    ModelCard,
)


@serve.deployment(name="LLM")
class LLM(ModelDeployment):
    kind = "llm"

    def __init__(self, llm: LLMConfig, model_store: Path, data_dir: Path, gpu: GPUClaim | None = None):
        # vLLM runs its pool in its own engine process: the plan bounds it through gpu_memory_utilization.
        super().__init__(
            llm.served_name,
            data_dir,
            gpu,
            model_store=model_store,
            model=llm.model,
            version=llm.version,
            cap_torch=False,
        )
        from deployments.engines import create_engine

        self._config = llm.model_copy(
            update={"gpu_memory_utilization": vllm_memory_utilization(llm.gpu_memory_utilization, self.gpu_share)}
        )
        self._engine = create_engine(self._config, self.model_path)
        self._tokenizer = self._engine.tokenizer
        self._adapters = Adapters(self._engine, llm, model_store)
        self._stats = GenerationStats(llm.served_name)
        adapters = f", adapters {[a.name for a in llm.adapters]}" if llm.adapters else ""
        self._announce_loaded(f"context {self._engine.max_model_len} tokens{adapters}")

    @property
    def engine_name(self) -> str:
        return self._engine.name

    def card(self, model: str | None = None) -> ModelCard:
        """The base model's card, or (named) an adapter's, whose `parent` is the base, as vLLM lists them."""
        card = super().card(max_model_len=self._engine.max_model_len)
        if model is None or model == self.served_name:
            return card
        if model not in self._adapters:
            raise NotFound(f"The model '{model}' does not exist", param="model")
        return card.model_copy(update={"id": model, "version": self._adapters.version(model), "parent": card.id})

    def placement(self) -> dict[str, Any]:
        """Where this replica runs and with what resources (for operators and tests)."""
        import os

        import ray

        context = ray.get_runtime_context()
        return {
            "engine": self.engine_name,
            "gpu_memory_utilization": self._config.gpu_memory_utilization,
            "assigned_resources": context.get_assigned_resources(),
            "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "node_id": context.get_node_id(),
        }

    def stats(self) -> dict[str, int]:
        """Generations on this replica: running now, and how past ones ended."""
        return self._stats.snapshot()

    def count_tokens(self, text: str | list[str]) -> int | list[int]:
        """Tokens in `text` (or in each of a list of texts, in one call) by this model's tokenizer."""
        if isinstance(text, list):
            return [len(ids) for ids in self._tokenizer(text, add_special_tokens=False)["input_ids"]]
        return len(self._tokenizer.encode(text, add_special_tokens=False))

    async def chat(self, request: ChatCompletionRequest | dict) -> ChatCompletion:
        request = self._accept(ChatCompletionRequest, request)
        acc, deltas = await self._start(
            request, mapping.chat_prompt_ids(self._tokenizer, request), "messages", stream=False
        )
        async for delta in deltas:
            acc.add(delta)
        return mapping.chat_completion(request.model, acc)

    async def chat_stream(self, request: ChatCompletionRequest | dict) -> AsyncIterator[ChatCompletionChunk]:
        # Everything that can reject the request runs before the first chunk, so a
        # caller awaiting that chunk gets a plain error instead of a broken stream.
        request = self._accept(ChatCompletionRequest, request)
        acc, deltas = await self._start(
            request, mapping.chat_prompt_ids(self._tokenizer, request), "messages", stream=True
        )
        base = ChatCompletion(model=request.model, choices=[], usage=acc.usage)
        yield mapping.chat_chunk(base, ChunkDelta(role="assistant", content=""))
        async for delta in deltas:
            acc.add(delta)
            if delta.text or delta.finish_reason:
                yield mapping.chat_chunk(base, ChunkDelta(content=delta.text or None), delta.finish_reason)
        if request.include_usage_in_stream:
            yield mapping.chat_usage_chunk(base, acc.usage)

    async def completion(self, request: CompletionRequest | dict) -> Completion:
        request = self._accept(CompletionRequest, request)
        acc, deltas = await self._start(
            request, mapping.completion_prompt_ids(self._tokenizer, request), "prompt", stream=False
        )
        async for delta in deltas:
            acc.add(delta)
        echo = request.prompt_text if request.echo else ""
        return mapping.text_completion(request.model, acc, echo)

    async def completion_stream(self, request: CompletionRequest | dict) -> AsyncIterator[Completion]:
        request = self._accept(CompletionRequest, request)
        acc, deltas = await self._start(
            request, mapping.completion_prompt_ids(self._tokenizer, request), "prompt", stream=True
        )
        base = Completion(model=request.model, choices=[])
        if request.echo:
            yield mapping.completion_chunk(base, request.prompt_text)
        async for delta in deltas:
            acc.add(delta)
            if delta.text or delta.finish_reason:
                yield mapping.completion_chunk(base, delta.text, delta.finish_reason)
        if request.include_usage_in_stream:
            yield mapping.completion_usage_chunk(base, acc.usage)

    async def check_health(self) -> None:
        await self._engine.check_health()

    def _accept(self, model_type: type[RequestT], request: RequestT | dict) -> RequestT:
        request = parse_request(model_type, request)
        if request.model != self.served_name and request.model not in self._adapters:
            raise NotFound(f"The model '{request.model}' does not exist", param="model")
        return request

    async def _start(
        self, request: Any, prompt_ids: list[int], prompt_param: str, *, stream: bool
    ) -> tuple[mapping.Accumulator, AsyncIterator[GenerationDelta]]:
        """Validate the request against the context window, load its adapter if any, then start generating."""
        settings = mapping.sampling_settings(request, len(prompt_ids), self._engine.max_model_len, prompt_param)
        if request.model != self.served_name:
            await self._adapters.load(request.model)
            settings = dataclasses.replace(settings, adapter=request.model)
            deltas = self._holding_adapter(prompt_ids, settings)
        else:
            deltas = self._engine.generate(prompt_ids, settings, request_id=uuid.uuid4().hex)
        # The clock starts here, once the request passed validation: TTFT includes the engine's queue.
        tracked = self._stats.track(deltas, prompt_tokens=len(prompt_ids), stream=stream, started=time.perf_counter())
        return mapping.Accumulator(prompt_tokens=len(prompt_ids)), tracked

    async def _holding_adapter(
        self, prompt_ids: list[int], settings: SamplingSettings
    ) -> AsyncIterator[GenerationDelta]:
        # Held from the generation's first step to its end; a stream cut before its first token never
        # started this, so it holds nothing. Acquiring again is an LRU hit unless evicted since `load`.
        await self._adapters.acquire(settings.adapter)
        deltas = self._engine.generate(prompt_ids, settings, request_id=uuid.uuid4().hex)
        try:
            async for delta in deltas:
                yield delta
        finally:
            await deltas.aclose()
            await self._adapters.release(settings.adapter)


class GenerationStats:
    """Counts generations by outcome (`cancelled` proves a client that went away stopped its work)
    and records the LLM metrics from the engine's deltas, the one place both engines' output passes."""

    def __init__(self, model: str) -> None:
        self._counts = {"in_flight": 0, "completed": 0, "cancelled": 0, "failed": 0}
        # Built once: recording then costs no dict per token.
        self._tags = {"model": model}
        self._ttft_tags = {True: {"model": model, "stream": "true"}, False: {"model": model, "stream": "false"}}

    def snapshot(self) -> dict[str, int]:
        return dict(self._counts)

    async def track(
        self, deltas: AsyncIterator[GenerationDelta], *, prompt_tokens: int, stream: bool, started: float
    ) -> AsyncIterator[GenerationDelta]:
        self._counts["in_flight"] += 1
        metrics.LLM_RUNNING.set(self._counts["in_flight"], self._tags)
        metrics.LLM_PROMPT_TOKENS.inc(prompt_tokens, self._tags)
        outcome = "failed"
        generated = 0
        last = started
        try:
            async for delta in deltas:
                if delta.new_tokens:
                    now = time.perf_counter()
                    if generated:
                        metrics.LLM_ITL.observe((now - last) / delta.new_tokens, self._tags)
                    else:
                        metrics.LLM_TTFT.observe(now - started, self._ttft_tags[stream])
                    generated += delta.new_tokens
                    last = now
                yield delta
            outcome = "completed"
        except (GeneratorExit, asyncio.CancelledError):
            outcome = "cancelled"
            raise
        finally:
            self._counts["in_flight"] -= 1
            self._counts[outcome] += 1
            metrics.LLM_RUNNING.set(self._counts["in_flight"], self._tags)
            metrics.LLM_COMPLETION_TOKENS.inc(generated, self._tags)
            # Stop the engine now (vLLM frees the sequence's KV blocks), not at garbage collection.
            await deltas.aclose()
