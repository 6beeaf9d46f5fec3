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
import json
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Any, TypeVar

from ray import serve

from deployments.base import ModelDeployment
from deployments.gpu_budget import vllm_memory_utilization
from deployments.llm import choices, tools
from deployments.llm import openai_mapping as mapping
from deployments.llm.adapters import Adapters
from deployments.llm.engines.base import (
    LOGPROBS,
    STRUCTURED_OUTPUTS,
    EngineFactory,
    GenerationDelta,
    SamplingSettings,
)
from deployments.llm.tool_parsers import parser_for
from serve_app.common import metrics
from serve_app.common.gpu_plan import GPUClaim
from serve_app.config import LLMConfig
from serve_app.errors import InvalidRequest, NotFound, parse_request
from serve_app.protocol import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChunkDelta,
    Completion,
    CompletionRequest,
    ModelCard,
    Usage,
)

LLMRequestT = TypeVar("LLMRequestT", ChatCompletionRequest, CompletionRequest)


@serve.deployment(name="LLM")
class LLM(ModelDeployment):
    kind = "llm"

    def __init__(
        self,
        llm: LLMConfig,
        model_store: Path,
        data_dir: Path,
        gpu: GPUClaim | None = None,
        engine_factory: EngineFactory | None = None,  # None: vLLM on CUDA, else transformers (engines.create_engine)
    ):
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
        if engine_factory is None:
            from deployments.llm.engines import create_engine

            engine_factory = create_engine

        self._config = llm.model_copy(
            update={"gpu_memory_utilization": vllm_memory_utilization(llm.gpu_memory_utilization, self.gpu_share)}
        )
        self._engine = engine_factory(self._config, self.model_path)
        self._tokenizer = self._engine.tokenizer
        self._adapters = Adapters(self._engine, llm, model_store)
        self._formatter = mapping.LogprobFormatter(self._tokenizer)
        self._tool_parser = parser_for(_model_type(self.model_path))
        self._stats = GenerationStats(llm.served_name)
        adapters = f", adapters {[a.name for a in llm.adapters]}" if llm.adapters else ""
        self._announce_loaded(f"context {self._engine.max_model_len} tokens{adapters}")

    @property
    def engine_name(self) -> str:
        return self._engine.name

    def card(self, model: str | None = None, **extra: Any) -> ModelCard:
        """The base model's card, or (named) an adapter's, whose `parent` is the base, as vLLM lists them."""
        card = super().card(max_model_len=self._engine.max_model_len, **extra)
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
        request = await self._accept(ChatCompletionRequest, request)
        prompt_ids, mode, generations = self._start_chat(request, stream=False)
        await choices.drain(generations)
        formatter = self._formatter if request.logprobs else None
        accs = [g.acc for g in generations]
        return ChatCompletion(
            model=request.model,
            choices=[choices.chat_choice(acc, mode, formatter) for acc in accs],
            usage=mapping.total_usage(len(prompt_ids), accs),
        )

    async def chat_stream(self, request: ChatCompletionRequest | dict) -> AsyncIterator[ChatCompletionChunk]:
        # Everything that can reject the request runs before the first chunk, so a
        # caller awaiting that chunk gets a plain error instead of a broken stream.
        request = await self._accept(ChatCompletionRequest, request)
        prompt_ids, mode, generations = self._start_chat(request, stream=True)
        formatter = self._formatter if request.logprobs else None
        base = ChatCompletion(model=request.model, choices=[], usage=Usage.of(0, 0))
        streams = {id(g): choices.ChatChoiceStream(g.acc.index, mode, formatter) for g in generations}
        for generation in generations:
            yield mapping.chat_chunk(base, ChunkDelta(role="assistant", content=""), index=generation.acc.index)
        async for generation, delta in choices.interleave(generations):
            for choice in streams[id(generation)].feed(delta):
                yield ChatCompletionChunk(id=base.id, created=base.created, model=base.model, choices=[choice])
        if request.include_usage_in_stream:
            yield mapping.chat_usage_chunk(base, mapping.total_usage(len(prompt_ids), [g.acc for g in generations]))

    async def completion(self, request: CompletionRequest | dict) -> Completion:
        request = await self._accept(CompletionRequest, request)
        prompts, generations = self._start_completion(request, stream=False)
        await choices.drain(generations)
        return Completion(
            model=request.model,
            choices=[self._completion_choice(request, prompts, g.acc) for g in generations],
            usage=mapping.total_usage(sum(len(p) for p in prompts), [g.acc for g in generations]),
        )

    async def completion_stream(self, request: CompletionRequest | dict) -> AsyncIterator[Completion]:
        request = await self._accept(CompletionRequest, request)
        prompts, generations = self._start_completion(request, stream=True)
        base = Completion(model=request.model, choices=[])
        # The echoed prompt goes out with a choice's first delta, which carries the prompt's logprobs, as vLLM
        # streams it. Offsets follow the tokens reported, as the whole answer's do.
        echoes = {id(g): self._echo(request, prompts, g.acc.index) for g in generations}
        offsets = dict.fromkeys(echoes, 0)
        async for generation, delta in choices.interleave(generations):
            text = echoes.pop(id(generation), "") + delta.text
            logprobs = None
            if request.logprobs is not None and (delta.prompt_logprobs or delta.logprobs):
                logprobs = self._formatter.completion(delta.prompt_logprobs + delta.logprobs, offsets[id(generation)])
                offsets[id(generation)] = logprobs.text_offset[-1] + len(logprobs.tokens[-1])
            if text or delta.finish_reason or logprobs:
                yield mapping.completion_chunk(base, text, delta.finish_reason, generation.acc.index, logprobs)
        if request.include_usage_in_stream:
            usage = mapping.total_usage(sum(len(p) for p in prompts), [g.acc for g in generations])
            yield mapping.completion_usage_chunk(base, usage)

    async def check_health(self) -> None:
        await self._engine.check_health()

    async def _accept(self, model_type: type[LLMRequestT], request: LLMRequestT | dict) -> LLMRequestT:
        request = parse_request(model_type, request)
        if request.model != self.served_name and request.model not in self._adapters:
            raise NotFound(f"The model '{request.model}' does not exist", param="model")
        if request.n > self._config.max_n:
            raise InvalidRequest(f"n must be at most {self._config.max_n} for this model", param="n")
        mapping.check_logit_bias(request, self._engine.vocab_size)
        if request.model != self.served_name:
            # Loaded (or an LRU hit) now: an adapter that cannot load answers before any output.
            await self._adapters.load(request.model)
        return request

    def _adapter(self, request: ChatCompletionRequest | CompletionRequest) -> str | None:
        return None if request.model == self.served_name else request.model

    def _start_chat(
        self, request: ChatCompletionRequest, *, stream: bool
    ) -> tuple[list[int], tools.ToolMode, list[choices.Generation]]:
        mode = tools.tool_mode(request, self._tool_parser)
        grammar = tools.grammar_for(request, mode)
        if grammar is not None:
            param = "response_format" if mode.kind in ("none", "auto") else "tool_choice"
            self._require(STRUCTURED_OUTPUTS, param)
        if request.logprobs:
            self._require(LOGPROBS, "logprobs")
        prompt_ids = mapping.chat_prompt_ids(self._tokenizer, request, with_tools=mode.kind != "none")
        settings = mapping.sampling_settings(request, len(prompt_ids), self._engine.max_model_len, "messages")
        settings = dataclasses.replace(settings, grammar=grammar, adapter=self._adapter(request))
        return prompt_ids, mode, [self._generation(prompt_ids, settings, i, stream) for i in range(request.n)]

    def _start_completion(
        self, request: CompletionRequest, *, stream: bool
    ) -> tuple[list[list[int]], list[choices.Generation]]:
        if request.logprobs is not None:
            self._require(LOGPROBS, "logprobs")
        grammar = tools.format_grammar(request.response_format)
        if grammar is not None:
            self._require(STRUCTURED_OUTPUTS, "response_format")
        prompts = mapping.completion_prompts(
            self._tokenizer, request, self._engine.vocab_size, self._config.max_prompts
        )
        # Every prompt is checked against the context window before any generation starts.
        settings = [
            dataclasses.replace(
                mapping.sampling_settings(request, len(ids), self._engine.max_model_len, "prompt"),
                grammar=grammar,
                adapter=self._adapter(request),
            )
            for ids in prompts
        ]
        return prompts, [
            self._generation(ids, s, p * request.n + j, stream, seed_index=j)
            for p, (ids, s) in enumerate(zip(prompts, settings, strict=True))
            for j in range(request.n)
        ]

    def _generation(
        self, prompt_ids: list[int], settings: Any, index: int, stream: bool, seed_index: int | None = None
    ) -> choices.Generation:
        settings = mapping.choice_settings(settings, index if seed_index is None else seed_index)
        if settings.adapter is None:
            deltas = self._engine.generate(prompt_ids, settings, request_id=uuid.uuid4().hex)
        else:
            deltas = self._holding_adapter(prompt_ids, settings)
        # The clock starts here, once the request passed validation: TTFT includes the engine's queue.
        tracked = self._stats.track(deltas, prompt_tokens=len(prompt_ids), stream=stream, started=time.perf_counter())
        return choices.Generation(mapping.Accumulator(prompt_tokens=len(prompt_ids), index=index), tracked)

    async def _holding_adapter(
        self, prompt_ids: list[int], settings: SamplingSettings
    ) -> AsyncGenerator[GenerationDelta, None]:
        # Held from the generation's first step to its end; a stream cut before its first token never
        # started this, so it holds nothing. Acquiring again is an LRU hit unless evicted since `_accept`.
        adapter = settings.adapter or ""  # _holding_adapter runs only for a named adapter
        await self._adapters.acquire(adapter)
        deltas = self._engine.generate(prompt_ids, settings, request_id=uuid.uuid4().hex)
        try:
            async for delta in deltas:
                yield delta
        finally:
            await deltas.aclose()
            await self._adapters.release(adapter)

    def _require(self, capability: str, param: str) -> None:
        if capability not in self._engine.capabilities:
            raise InvalidRequest(
                f"the {self._engine.name} engine serving this model does not support {capability}", param=param
            )

    def _echo(self, request: CompletionRequest, prompts: list[list[int]], index: int) -> str:
        if not request.echo:
            return ""
        prompt = request.prompts[index // request.n]
        return prompt if isinstance(prompt, str) else self._tokenizer.decode(prompts[index // request.n])

    def _completion_choice(self, request: CompletionRequest, prompts: list[list[int]], acc: mapping.Accumulator):
        echo = self._echo(request, prompts, acc.index)
        # With echo, the prompt's logprobs come first (the engine scored them): one list over the whole text.
        entries = acc.prompt_logprobs + acc.logprobs
        logprobs = self._formatter.completion(entries) if request.logprobs is not None else None
        return mapping.completion_choice(acc, echo, logprobs)


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
        self, deltas: AsyncGenerator[GenerationDelta, None], *, prompt_tokens: int, stream: bool, started: float
    ) -> AsyncGenerator[GenerationDelta, None]:
        self._counts["in_flight"] += 1
        metrics.LLM_RUNNING.set(self._counts["in_flight"], self._tags)
        metrics.LLM_PROMPT_TOKENS.inc(prompt_tokens, self._tags)
        outcome = "failed"
        generated = first_tokens = 0
        first = last = started
        try:
            async for delta in deltas:
                if delta.new_tokens:
                    last = time.perf_counter()
                    if not generated:
                        first, first_tokens = last, delta.new_tokens
                        metrics.LLM_TTFT.observe(first - started, self._ttft_tags[stream])
                    generated += delta.new_tokens
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
            if generated > first_tokens:  # once per generation, not per delta: a recording costs as a token
                metrics.LLM_ITL.observe((last - first) / (generated - first_tokens), self._tags)
            # Stop the engine now (vLLM frees the sequence's KV blocks), not at garbage collection.
            await deltas.aclose()


def _model_type(model_dir: Path) -> str | None:
    """The checkpoint's family (config.json's model_type), which picks its tool-call parser."""
    try:
        return json.loads((model_dir / "config.json").read_text()).get("model_type")
    except (OSError, ValueError):
        return None
