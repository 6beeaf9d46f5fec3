"""The LLM serving path at the speed of its engine: output tokens/s three ways, side by side.

    python benchmarks/serving_path.py                       # starts configs/local.yaml itself
    python benchmarks/serving_path.py --base-url URL        # a running server started from --config

The same tokens made three ways, with the same model, prompt and output lengths
(random prompts of --input-len tokens in a chat message, --output-len tokens each,
ignore_eos, temperature 1) and the same torch threads as the LLM replica:

  static  transformers' own generate() with static batches (the hardware's reference);
  engine  the project's TransformersEngine in this process, requests kept in flight;
  http    the running server through `vllm bench serve` (openai-chat backend).

Each round runs the three at concurrency 1 and 16, in an order that rotates between
rounds; the ratios are taken within a round and reported as median and range:
http/engine (target >= 0.9 at 1 and at 16) and engine/static (target >= 0.7 at 16).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.measuring import provenance, spread  # noqa: E402
from benchmarks.serving import serving  # noqa: E402
from benchmarks.vllm_bench import VllmBench  # noqa: E402

CONCURRENCY = (1, 16)
WAYS = ("static", "engine", "http")


def main() -> None:
    args = _args()
    app = yaml.safe_load(Path(args.config).read_text())["applications"][0]
    local = _Local(app, args)
    with serving(args.config, args.base_url) as base_url:
        http = VllmBench(base_url, local.served_name, str(local.model_dir), args.input_len, args.output_len)
        http.run(1, 2)  # warm-up: first requests pay lazy initialisation on both sides
        local.engine_tok_s(16, 16)
        rounds = []
        for number in range(args.rounds):
            order = WAYS[number % 3 :] + WAYS[: number % 3]
            figures: dict[tuple[str, int], dict] = {}
            for concurrency in CONCURRENCY:
                prompts = args.prompts_at_1 if concurrency == 1 else args.prompts_at_16
                for way in order:
                    if way == "http":
                        result = http.run(concurrency, prompts)
                        figures[way, concurrency] = {
                            "tok_s": result["output_throughput"],
                            "ttft_ms": result["median_ttft_ms"],
                        }
                    elif way == "engine":
                        figures[way, concurrency] = {"tok_s": local.engine_tok_s(concurrency, prompts)}
                    else:
                        figures[way, concurrency] = {"tok_s": local.static_tok_s(concurrency, prompts)}
            rounds.append(figures)
            print(f"round {number + 1}: " + _line(figures), flush=True)
    _report(rounds, args)


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPO / "configs" / "local.yaml"))
    parser.add_argument("--base-url", help="measure a running server instead of starting one")
    parser.add_argument("--input-len", type=int, default=64)
    parser.add_argument("--output-len", type=int, default=32)
    parser.add_argument("--prompts-at-1", type=int, default=8)
    parser.add_argument("--prompts-at-16", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    return parser.parse_args()


class _Local:
    """The first LLM of the config, loaded in this process as its replica loads it."""

    def __init__(self, app: dict, args: argparse.Namespace):
        import torch

        from deployments.llm import openai_mapping
        from deployments.llm.engines.transformers_engine import TransformersEngine
        from serve_app.common.model_store import verify
        from serve_app.config import parse_app_config
        from serve_app.protocol import ChatCompletionRequest

        config = parse_app_config(app["args"])
        llm = config.llms[0]
        options = next(d for d in app.get("deployments", []) if d["name"] == (llm.deployment or "LLM"))
        # Ray sets a replica's OMP_NUM_THREADS to its num_cpus: the same threads here.
        torch.set_num_threads(llm.cpu_threads or max(1, int(options["ray_actor_options"]["num_cpus"])))
        self.served_name = llm.served_name
        self.model_dir = verify(config.model_store, llm.model, llm.version).path
        self.engine = TransformersEngine.create(self.model_dir, llm)
        self._output_len = args.output_len
        # Random tokens as text in a chat message, as vLLM's random dataset sends them.
        rng, tokenizer = random.Random(0), self.engine.tokenizer
        self.prompts = []
        for _ in range(max(args.prompts_at_1, args.prompts_at_16)):
            text = tokenizer.decode([rng.randrange(tokenizer.vocab_size) for _ in range(args.input_len)])
            # Decoded noise encodes to more tokens than it came from: cut to the length, as vLLM's dataset does.
            text = tokenizer.decode(tokenizer.encode(text)[: args.input_len])
            request = ChatCompletionRequest(model=llm.served_name, messages=[{"role": "user", "content": text}])
            self.prompts.append(openai_mapping.chat_prompt_ids(tokenizer, request))

    def static_tok_s(self, batch: int, prompts: int) -> float:
        import torch

        model, tokens, started = self.engine.model, 0, time.perf_counter()
        for start in range(0, prompts, batch):
            rows = self.prompts[start : start + batch]
            width = max(map(len, rows))
            ids = torch.tensor([[0] * (width - len(r)) + r for r in rows])
            mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
            with torch.inference_mode():
                out = model.generate(
                    ids,
                    attention_mask=mask,
                    max_new_tokens=self._output_len,
                    min_new_tokens=self._output_len,
                    do_sample=True,
                    temperature=1.0,
                    top_k=0,
                    top_p=1.0,
                    pad_token_id=0,
                )
            tokens += (out.shape[1] - width) * out.shape[0]
        return tokens / (time.perf_counter() - started)

    def engine_tok_s(self, concurrency: int, prompts: int) -> float:
        return asyncio.run(self._engine_tok_s(concurrency, prompts))

    async def _engine_tok_s(self, concurrency: int, prompts: int) -> float:
        from deployments.llm.engines.base import SamplingSettings

        gate = asyncio.Semaphore(concurrency)
        settings = SamplingSettings(max_tokens=self._output_len, temperature=1.0, ignore_eos=True)

        async def one(ids: list[int]) -> int:
            async with gate:
                return sum([d.new_tokens async for d in self.engine.generate(ids, settings, "bench")])

        started = time.perf_counter()
        tokens = sum(await asyncio.gather(*(one(ids) for ids in self.prompts[:prompts])))
        return tokens / (time.perf_counter() - started)


def _line(figures: dict) -> str:
    return (
        "; ".join(f"c{c} " + " ".join(f"{way} {figures[way, c]['tok_s']:.0f}" for way in WAYS) for c in CONCURRENCY)
        + " tok/s"
    )


def _report(rounds: list[dict], args: argparse.Namespace) -> None:
    print(f"\n{provenance()}")
    print(
        f"LLM output tokens/s, {args.input_len}-token prompts, {args.output_len} tokens each, ignore_eos; "
        f"median of {len(rounds)} rounds"
    )
    print(f"{'':16}" + "".join(f"{way:>10}" for way in WAYS) + f"{'TTFT p50 ms (http)':>22}")
    for c in CONCURRENCY:
        medians = [statistics.median(r[way, c]["tok_s"] for r in rounds) for way in WAYS]
        ttft = statistics.median(r["http", c]["ttft_ms"] for r in rounds)
        print(f"{f'concurrency {c}':16}" + "".join(f"{m:>10.0f}" for m in medians) + f"{ttft:>22.1f}")
    for c in CONCURRENCY:
        ratios = [r["http", c]["tok_s"] / r["engine", c]["tok_s"] for r in rounds]
        print(f"http / engine at {c:>2}:   {spread(ratios)}   target >= 0.9")
    for c in CONCURRENCY:
        ratios = [r["engine", c]["tok_s"] / r["static", c]["tok_s"] for r in rounds]
        target = "   target >= 0.7" if c == 16 else ""
        print(f"engine / static at {c:>2}: {spread(ratios)}{target}")


if __name__ == "__main__":
    main()
