"""GPU engine: vLLM's async engine (`AsyncLLM`) behind the `Engine` protocol.

vLLM is imported inside functions only: `import vllm` alone pulls in torch, and
the CPU path imports this package without ever building a vLLM engine.

Environment in a Ray Serve replica: none needs setting. vLLM detects that it runs
inside a Ray actor and itself switches `VLLM_WORKER_MULTIPROC_METHOD` to `spawn`
and exports `RAY_ADDRESS` for its engine-core process
(`vllm.utils.system_utils._maybe_force_spawn`). With one GPU per engine the
executor is "uni" (the worker lives in that child process), not Ray, so the
replica's CUDA_VISIBLE_DEVICES is all it sees. Telemetry and cache locations
come from `serve_app.runtime`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import aclosing
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deployments.engines.base import FinishReason, GenerationDelta, SamplingSettings
from serve_app.config import LLMConfig
from serve_app.errors import APIError, InternalError, ServiceUnavailable

if TYPE_CHECKING:
    from vllm import AsyncEngineArgs, RequestOutput, SamplingParams

_FINISH_REASONS: dict[str, FinishReason] = {"stop": "stop", "length": "length"}


class VLLMEngine:
    name = "vllm"

    def __init__(self, engine: Any, tokenizer: Any, max_model_len: int):
        self._engine = engine
        self.tokenizer = tokenizer
        self.max_model_len = max_model_len

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
        return cls(engine, tokenizer, engine.model_config.max_model_len)

    async def generate(
        self, prompt_ids: list[int], settings: SamplingSettings, request_id: str
    ) -> AsyncIterator[GenerationDelta]:
        from vllm.inputs import tokens_input

        # An already-rendered token input: vLLM neither re-tokenizes it nor takes
        # its deprecated raw-prompt path, so prefix-cache hits and usage counts
        # follow exactly the ids the deployment validated.
        stream = self._engine.generate(tokens_input(prompt_ids), to_sampling_params(settings), request_id)
        async with aclosing(stream):
            try:
                async for output in stream:
                    delta = to_delta(output)
                    if delta is not None:
                        yield delta
            except (GeneratorExit, asyncio.CancelledError):
                # The consumer went away (client disconnected): free the sequence's
                # KV blocks now rather than when the inner stream is garbage-collected.
                await self._engine.abort(request_id)
                raise

    async def check_health(self) -> None:
        await self._engine.check_health()

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
    )


def to_sampling_params(settings: SamplingSettings) -> SamplingParams:
    from vllm.sampling_params import RequestOutputKind, SamplingParams

    return SamplingParams(
        n=1,
        max_tokens=settings.max_tokens,
        # vLLM samples greedily below 1e-5 and then resets top_p/top_k itself.
        temperature=settings.temperature,
        top_p=settings.top_p,
        stop=list(settings.stop),
        seed=settings.seed,
        presence_penalty=settings.presence_penalty,
        frequency_penalty=settings.frequency_penalty,
        skip_special_tokens=True,
        # Each RequestOutput then carries only the text and token ids new since the last.
        output_kind=RequestOutputKind.DELTA,
    )


def to_delta(output: RequestOutput) -> GenerationDelta | None:
    """Map one DELTA-mode RequestOutput; None when it carries nothing new."""
    completion = output.outputs[0]
    reason = completion.finish_reason
    if reason is not None and reason not in _FINISH_REASONS:
        raise _finish_error(reason)
    # Text can be empty while tokens are not (held back for a possible stop string
    # or an unfinished UTF-8 character); the tokens still count towards usage.
    new_tokens = len(completion.token_ids)
    if reason is None and not completion.text and not new_tokens:
        return None
    finish = _FINISH_REASONS[reason] if reason is not None else None
    return GenerationDelta(completion.text, new_tokens, finish)


def _finish_error(reason: str) -> APIError:
    if reason == "abort":
        # Unless we asked, vLLM aborts only when pausing, shutting down or recovering
        # from a fault: a retry, possibly on another replica, can succeed.
        return ServiceUnavailable("the LLM engine aborted the generation; retry the request")
    # "error" is vLLM's request-level internal failure (e.g. a KV-cache load).
    return InternalError(f"the LLM engine ended the generation with finish reason {reason!r}")
