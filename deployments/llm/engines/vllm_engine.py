"""GPU engine: vLLM's async engine (`AsyncLLM`) behind the `Engine` protocol.

vLLM is imported inside functions only: `import vllm` alone pulls in torch, and
the CPU path imports this package without ever building a vLLM engine.

Environment in a Ray Serve replica: none needs setting. vLLM detects that it runs
inside a Ray actor and itself switches `VLLM_WORKER_MULTIPROC_METHOD` to `spawn`
and exports `RAY_ADDRESS` for its engine-core process
(`vllm.utils.system_utils._maybe_force_spawn`). With one GPU per engine the
executor is "uni" (the worker lives in that child process), not Ray, so the
replica's CUDA_VISIBLE_DEVICES is all it sees. Telemetry and cache locations
come from `serve_app.common.runtime`.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncGenerator
from contextlib import aclosing
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deployments.llm.engines.base import (
    LOGPROBS,
    LORA,
    STRUCTURED_OUTPUTS,
    FinishReason,
    GenerationDelta,
    GrammarSpec,
    SamplingSettings,
    TokenLogprob,
)
from serve_app.config import LLMConfig
from serve_app.errors import APIError, InternalError, ServiceUnavailable

if TYPE_CHECKING:
    from vllm import AsyncEngineArgs, RequestOutput, SamplingParams

_FINISH_REASONS: dict[str, FinishReason] = {"stop": "stop", "length": "length"}


class VLLMEngine:
    name = "vllm"
    capabilities = frozenset({STRUCTURED_OUTPUTS, LOGPROBS, LORA})

    def __init__(self, engine: Any, tokenizer: Any, max_model_len: int, vocab_size: int = 0):
        self._engine = engine
        self.tokenizer = tokenizer
        self.max_model_len = max_model_len
        self.vocab_size = vocab_size
        self._loras: dict[str, Any] = {}  # adapter name -> its LoRARequest
        self._lora_ids = itertools.count(1)  # vLLM keys adapters by a positive int, unique per engine

    @classmethod
    def create(cls, model_dir: Path, config: LLMConfig) -> VLLMEngine:
        from transformers import AutoTokenizer
        from vllm.v1.engine.async_llm import AsyncLLM
        from vllm.v1.metrics.ray_wrappers import RayPrometheusStatLogger

        # First: a broken tokenizer must fail before GPU memory and processes are taken.
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        # vLLM's own engine metrics (`ray_vllm:*`: KV-cache use, queue, prefix-cache hits...) through
        # Ray's metrics, so the node's exporter serves them beside the app's, as Ray Serve LLM does.
        engine = AsyncLLM.from_engine_args(to_engine_args(model_dir, config), stat_loggers=[RayPrometheusStatLogger])
        # Read after start-up: the engine core may shrink max_model_len to fit the KV cache.
        return cls(engine, tokenizer, engine.model_config.max_model_len, engine.model_config.get_vocab_size())

    async def generate(
        self, prompt_ids: list[int], settings: SamplingSettings, request_id: str
    ) -> AsyncGenerator[GenerationDelta, None]:
        from vllm.inputs import tokens_input

        # An already-rendered token input: vLLM neither re-tokenizes it nor takes
        # its deprecated raw-prompt path, so prefix-cache hits and usage counts
        # follow exactly the ids the deployment validated.
        lora = {"lora_request": self._loras[settings.adapter]} if settings.adapter else {}
        stream = self._engine.generate(tokens_input(prompt_ids), to_sampling_params(settings), request_id, **lora)
        scored: tuple[TokenLogprob, ...] = ()
        async with aclosing(stream):
            try:
                async for output in stream:
                    delta = to_delta(output, settings.logprobs or 0, prompt_ids, settings.prompt_logprobs)
                    if delta is None:
                        continue
                    if settings.max_tokens == 0:
                        # Prompt scoring: vLLM needs max_tokens >= 1, so it generated a token the client did not
                        # ask for. Only the prompt's logprobs and the end, at the limit of 0, are reported.
                        scored += delta.prompt_logprobs
                        if delta.finish_reason is None:
                            continue
                        delta = GenerationDelta("", 0, "length", prompt_logprobs=scored)
                    yield delta
            except (GeneratorExit, asyncio.CancelledError):
                # The consumer went away (client disconnected): free the sequence's
                # KV blocks now rather than when the inner stream is garbage-collected.
                await self._engine.abort(request_id)
                raise

    async def check_health(self) -> None:
        await self._engine.check_health()

    async def load_adapter(self, name: str, path: Path) -> None:
        from vllm.lora.request import LoRARequest

        if name not in self._loras:
            request = LoRARequest(lora_name=name, lora_int_id=next(self._lora_ids), lora_path=str(path))
            # Loaded now, not on the first request's critical path; vLLM then keeps it in its own LRU (max_loras).
            await self._engine.add_lora(request)
            self._loras[name] = request

    async def unload_adapter(self, name: str) -> None:
        request = self._loras.pop(name, None)
        if request is not None:
            await self._engine.remove_lora(request.lora_int_id)

    def shutdown(self) -> None:
        self._engine.shutdown()


def to_engine_args(model_dir: Path, config: LLMConfig) -> AsyncEngineArgs:
    from vllm import AsyncEngineArgs

    return AsyncEngineArgs(
        model=str(model_dir),
        served_model_name=config.served_name,
        gpu_memory_utilization=config.gpu_memory_utilization,
        enable_prefix_caching=config.enable_prefix_caching,
        max_model_len=config.max_model_len,
        dtype=config.dtype,
        max_num_seqs=config.max_num_seqs,
        # Per-request lines would log prompt token ids at DEBUG; the periodic
        # throughput/KV-cache stats stay on, they are what operators watch.
        enable_log_requests=False,
        disable_log_stats=False,
        **lora_args(config),
        # Checked by LLMConfig: none of these repeats an option set above.
        **config.engine_kwargs,
    )


def lora_args(config: LLMConfig) -> dict[str, Any]:
    if not config.adapters:
        return {}
    return {"enable_lora": True, "max_loras": config.max_adapters_per_replica, "max_lora_rank": config.max_lora_rank}


def to_sampling_params(settings: SamplingSettings) -> SamplingParams:
    from vllm.sampling_params import RequestOutputKind, SamplingParams

    return SamplingParams(
        n=1,
        max_tokens=max(settings.max_tokens, 1),  # 0 (prompt scoring) is vLLM's own echo rule: one token, dropped
        # vLLM samples greedily below 1e-5 and then resets top_p/top_k itself.
        temperature=settings.temperature,
        top_p=settings.top_p,
        stop=list(settings.stop),
        seed=settings.seed,
        presence_penalty=settings.presence_penalty,
        frequency_penalty=settings.frequency_penalty,
        top_k=settings.top_k,
        min_tokens=settings.min_tokens,
        ignore_eos=settings.ignore_eos,
        repetition_penalty=settings.repetition_penalty,
        logit_bias=dict(settings.logit_bias) or None,
        # vLLM's default logprobs are the raw model output's, as the CPU engine reports them.
        logprobs=settings.logprobs,
        # Computed from the prefill's logits; vLLM reads them as raw model logprobs too.
        prompt_logprobs=settings.prompt_logprobs,
        structured_outputs=to_structured_outputs(settings.grammar),
        skip_special_tokens=True,
        # Each RequestOutput then carries only the text and token ids new since the last.
        output_kind=RequestOutputKind.DELTA,
    )


def to_structured_outputs(grammar: GrammarSpec | None) -> Any:
    if grammar is None:
        return None
    from vllm.sampling_params import StructuredOutputsParams

    if grammar.kind == "json_schema":
        return StructuredOutputsParams(json=grammar.schema)
    return StructuredOutputsParams(json_object=True)


def to_logprobs(completion: Any, top_logprobs: int) -> tuple[TokenLogprob, ...]:
    """vLLM's per-position {token id: Logprob} → TokenLogprob. Each position holds the top
    `top_logprobs` (ranks 1..k) and the sampled token, with its own rank, when it is not among them."""
    if not completion.logprobs:
        return ()
    return tuple(
        _entry(token_id, position, top_logprobs)
        for token_id, position in zip(completion.token_ids, completion.logprobs, strict=False)
    )


def to_prompt_logprobs(output: RequestOutput, prompt_ids: list[int], top_logprobs: int) -> tuple[TokenLogprob, ...]:
    """vLLM's prompt logprobs (sent once, at the end of the prefill) → one TokenLogprob per prompt token.
    Its first position is None (or empty): nothing predicts the first token, whose logprob is None."""
    if not output.prompt_logprobs:
        return ()
    return tuple(
        _entry(token_id, position, top_logprobs) if position else TokenLogprob(token_id, None)
        for token_id, position in zip(prompt_ids, output.prompt_logprobs, strict=False)
    )


def _entry(token_id: int, position: Any, top_logprobs: int) -> TokenLogprob:
    ranked = sorted(position.items(), key=lambda item: item[1].rank)
    top = tuple((tid, lp.logprob) for tid, lp in ranked if lp.rank <= top_logprobs)
    return TokenLogprob(token_id, position[token_id].logprob, top)


def to_delta(
    output: RequestOutput,
    top_logprobs: int = 0,
    prompt_ids: list[int] | None = None,
    prompt_logprobs: int | None = None,
) -> GenerationDelta | None:
    """Map one DELTA-mode RequestOutput; None when it carries nothing new."""
    completion = output.outputs[0]
    reason = completion.finish_reason
    if reason is not None and reason not in _FINISH_REASONS:
        raise _finish_error(reason)
    scored = to_prompt_logprobs(output, prompt_ids or [], prompt_logprobs) if prompt_logprobs is not None else ()
    # Text can be empty while tokens are not (held back for a possible stop string
    # or an unfinished UTF-8 character); the tokens still count towards usage.
    new_tokens = len(completion.token_ids)
    if reason is None and not completion.text and not new_tokens and not scored:
        return None
    finish = _FINISH_REASONS[reason] if reason is not None else None
    return GenerationDelta(completion.text, new_tokens, finish, to_logprobs(completion, top_logprobs), scored)


def _finish_error(reason: str) -> APIError:
    if reason == "abort":
        # Unless we asked, vLLM aborts only when pausing, shutting down or recovering
        # from a fault: a retry, possibly on another replica, can succeed.
        return ServiceUnavailable("the LLM engine aborted the generation; retry the request")
    # "error" is vLLM's request-level internal failure (e.g. a KV-cache load).
    return InternalError(f"the LLM engine ended the generation with finish reason {reason!r}")
