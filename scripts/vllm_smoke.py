"""GPU smoke test of the vLLM engine, outside Ray: run it on a CUDA host before deploying.

    python scripts/vllm_smoke.py [--store models] [--model tiny-qwen2] [--version v1]
                                 [--gpu-memory-utilization 0.3]

It verifies the model in the store, starts `VLLMEngine` exactly as the LLM deployment
does, then checks: one streamed completion (printing deltas, time to first token and
decode speed), eight concurrent generations, a client that disconnects mid-stream
(the engine must abort it and keep serving), and the engine's health. Each check
prints PASS or FAIL; the exit status is 0 only when every check passed.

The tiny models have random weights: their text is noise and they may stop after one
token. That is expected; the checks are about the engine, not the words.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

# Runnable as `python scripts/vllm_smoke.py` from a checkout without an installed package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deployments.llm.engines.base import GenerationDelta, SamplingSettings  # noqa: E402

if TYPE_CHECKING:
    from deployments.llm.engines.vllm_engine import VLLMEngine

CONCURRENCY = 8


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, default=Path("models"), help="model store root (default: models)")
    parser.add_argument("--model", default="tiny-qwen2", help="model name in the store")
    parser.add_argument("--version", default="v1", help="model version in the store")
    parser.add_argument(
        "--gpu-memory-utilization",
        type=float,
        default=0.3,
        help="fraction of the WHOLE card vLLM preallocates; must fit in the memory free now (default: 0.3)",
    )
    parser.add_argument("--data-dir", type=Path, default=Path("data"), help="caches (vLLM compile cache etc.)")
    parser.add_argument("--max-model-len", type=int, default=None, help="context window (default: the model's)")
    parser.add_argument("--prompt", default="The capital of France is", help="completion prompt")
    parser.add_argument("--max-tokens", type=int, default=64, help="tokens per generation")
    parser.add_argument("--step-timeout", type=float, default=120.0, help="seconds before a check counts as hung")
    return parser.parse_args()


def say(message: str) -> None:
    # vLLM logs heavily to the same terminal; a prefix keeps this script's lines findable.
    print(f"[smoke] {message}", flush=True)


@dataclass
class StreamStats:
    text: str
    tokens: int
    finish_reason: str | None
    ttft_s: float
    total_s: float

    @property
    def decode_tokens_per_s(self) -> float:
        # The first token's time is prefill plus queueing; decode speed is what follows it.
        decode_s = self.total_s - self.ttft_s
        return (self.tokens - 1) / decode_s if self.tokens > 1 and decode_s > 0 else float("nan")


async def collect(
    stream: AsyncIterator[GenerationDelta], on_delta: Callable[[GenerationDelta], None] | None = None
) -> StreamStats:
    """Drain one generation, checking the protocol: only the last delta carries finish_reason."""
    start = time.perf_counter()
    ttft = None
    text, tokens, finish = [], 0, None
    async for delta in stream:
        if finish is not None:
            raise AssertionError(f"delta after the final one (finish_reason={finish!r}): {delta!r}")
        if ttft is None and delta.new_tokens:
            ttft = time.perf_counter() - start
        if on_delta:
            on_delta(delta)
        text.append(delta.text)
        tokens += delta.new_tokens
        finish = delta.finish_reason
    total = time.perf_counter() - start
    return StreamStats("".join(text), tokens, finish, ttft if ttft is not None else total, total)


def check_finished(stats: StreamStats, max_tokens: int, label: str) -> None:
    if stats.finish_reason not in ("stop", "length"):
        raise AssertionError(f"{label}: stream ended without finish_reason stop/length ({stats.finish_reason!r})")
    if not 1 <= stats.tokens <= max_tokens:
        raise AssertionError(f"{label}: {stats.tokens} tokens reported, expected 1..{max_tokens}")
    if stats.finish_reason == "length" and stats.tokens != max_tokens:
        raise AssertionError(f"{label}: finish_reason 'length' after {stats.tokens} of {max_tokens} tokens")


class Smoke:
    def __init__(self, engine: VLLMEngine, prompt_ids: list[int], max_tokens: int):
        self.engine = engine
        self.prompt_ids = prompt_ids
        self.max_tokens = max_tokens

    async def streamed_completion(self) -> str:
        settings = SamplingSettings(max_tokens=self.max_tokens, temperature=0.0)

        def show(delta: GenerationDelta) -> None:
            print(f"    delta tokens={delta.new_tokens} text={delta.text!r} finish={delta.finish_reason}", flush=True)

        stats = await collect(self.engine.generate(self.prompt_ids, settings, _request_id("stream")), show)
        check_finished(stats, self.max_tokens, "stream")
        return (
            f"{stats.tokens} tokens, finish={stats.finish_reason}, time to first token "
            f"{stats.ttft_s * 1000:.0f} ms, decode {stats.decode_tokens_per_s:.1f} tok/s; text {stats.text!r}"
        )

    async def concurrent_generations(self) -> str:
        # Distinct seeds so the sequences differ and really are batched as separate requests.
        streams = [
            self.engine.generate(
                self.prompt_ids,
                SamplingSettings(max_tokens=self.max_tokens, temperature=0.8, seed=i),
                _request_id(f"concurrent-{i}"),
            )
            for i in range(CONCURRENCY)
        ]
        start = time.perf_counter()
        results = await asyncio.gather(*(collect(s) for s in streams))
        wall = time.perf_counter() - start
        for i, stats in enumerate(results):
            check_finished(stats, self.max_tokens, f"generation {i}")
        tokens = sum(s.tokens for s in results)
        worst_ttft = max(s.ttft_s for s in results)
        return (
            f"{CONCURRENCY} generations, {tokens} tokens in {wall:.2f} s = {tokens / wall:.1f} tok/s "
            f"aggregate, slowest time to first token {worst_ttft * 1000:.0f} ms"
        )

    async def client_disconnect(self) -> str:
        # The path a dropped HTTP stream takes: close after the first delta; vLLM must
        # abort the request and still serve the next one.
        settings = SamplingSettings(max_tokens=self.max_tokens, temperature=0.0)
        stream = self.engine.generate(self.prompt_ids, settings, _request_id("disconnect"))
        first = await anext(stream)
        await stream.aclose()
        # AsyncLLM's own count: an aborted request must not linger holding KV blocks.
        unfinished = self.engine._engine.get_num_unfinished_requests()
        if unfinished:
            raise AssertionError(f"{unfinished} request(s) still unfinished in vLLM after the close")
        after = await collect(self.engine.generate(self.prompt_ids, settings, _request_id("after-disconnect")))
        check_finished(after, self.max_tokens, "generation after the disconnect")
        aborted = "ended on its own first (abort not exercised)" if first.finish_reason else "aborted"
        return f"closed after the first delta, request {aborted}; the next generation finished ({after.finish_reason})"

    async def health(self) -> str:
        await self.engine.check_health()
        return "engine reports healthy"


def _request_id(label: str) -> str:
    return f"smoke-{label}-{uuid.uuid4().hex[:8]}"


async def run_checks(smoke: Smoke, timeout_s: float) -> list[tuple[str, bool]]:
    checks: list[tuple[str, Callable[[], Awaitable[str]]]] = [
        ("streamed completion", smoke.streamed_completion),
        (f"{CONCURRENCY} concurrent generations", smoke.concurrent_generations),
        ("client disconnect aborts", smoke.client_disconnect),
        ("health check", smoke.health),
    ]
    results = []
    for name, check in checks:
        say(f"--- {name}")
        try:
            detail = await asyncio.wait_for(check(), timeout_s)
        except TimeoutError:
            say(f"FAIL {name}: no result within {timeout_s:.0f} s")
            results.append((name, False))
        except Exception as exc:  # a smoke test reports every failure and carries on
            say(f"FAIL {name}: {type(exc).__name__}: {exc}")
            results.append((name, False))
        else:
            say(f"PASS {name}: {detail}")
            results.append((name, True))
    return results


def start_engine(args: argparse.Namespace) -> VLLMEngine:
    from deployments.llm.engines.vllm_engine import VLLMEngine
    from serve_app.common.model_store import verify
    from serve_app.config import LLMConfig

    ref = verify(args.store.expanduser().resolve(), args.model, args.version)
    say(f"model {args.model}/{args.version} verified at {ref.path}")
    config = LLMConfig(
        served_name=args.model,
        model=args.model,
        version=args.version,
        engine="vllm",
        max_model_len=args.max_model_len,
        gpu_memory_utilization=args.gpu_memory_utilization,
    )
    say(f"starting vLLM (gpu_memory_utilization={config.gpu_memory_utilization}); this can take minutes")
    start = time.perf_counter()
    engine = VLLMEngine.create(ref.path, config)
    say(f"engine up in {time.perf_counter() - start:.1f} s, max_model_len={engine.max_model_len}")
    return engine


def require_cuda() -> None:
    import torch

    # device_count() does not initialise CUDA, so vLLM may still fork its engine process.
    if not torch.cuda.is_available():
        raise SystemExit(
            "[smoke] FAIL: no CUDA device visible to torch. Run this on a GPU host "
            "(check nvidia-smi and CUDA_VISIBLE_DEVICES)."
        )
    say(f"CUDA devices visible: {torch.cuda.device_count()}")


async def main(args: argparse.Namespace) -> int:
    from serve_app.common.model_store import ModelStoreError

    try:
        engine = start_engine(args)
    except ModelStoreError as exc:
        say(f"FAIL model store: {exc}")
        return 1
    except Exception:
        traceback.print_exc()
        say(
            "FAIL engine start (traceback above). Common causes: less free GPU memory than "
            "--gpu-memory-utilization asks for, or a max_model_len the KV cache cannot hold."
        )
        return 1
    try:
        prompt_ids = engine.tokenizer.encode(args.prompt)
        if len(prompt_ids) + args.max_tokens > engine.max_model_len:
            raise SystemExit(f"[smoke] FAIL: prompt + --max-tokens exceed max_model_len={engine.max_model_len}")
        say(f"prompt {args.prompt!r} = {len(prompt_ids)} tokens")
        results = await run_checks(Smoke(engine, prompt_ids, args.max_tokens), args.step_timeout)
    finally:
        engine.shutdown()
    failed = [name for name, ok in results if not ok]
    say(f"FAIL: {', '.join(failed)}" if failed else f"PASS: all {len(results)} checks")
    return 1 if failed else 0


if __name__ == "__main__":
    arguments = parse_args()
    from serve_app.common.runtime import configure_offline_runtime

    # Before vLLM is imported: it reads these (telemetry off, caches under --data-dir) once.
    configure_offline_runtime(arguments.data_dir.expanduser().resolve())
    require_cuda()
    sys.exit(asyncio.run(main(arguments)))
