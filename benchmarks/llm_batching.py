"""Continuous batching on the CPU engine, and what a grammar costs, measured by `vllm bench serve`.

    python benchmarks/llm_batching.py                      # starts configs/local.yaml itself
    python benchmarks/llm_batching.py --base-url http://127.0.0.1:8000   # an already running server

Three runs against one server, all on the chat endpoint with the same random prompts
(vLLM's random dataset, tokenized with the local tiny model's tokenizer) and
`ignore_eos`, so every request generates the same number of tokens:

  1. concurrency 1, unconstrained;
  2. concurrency 16, unconstrained;
  3. concurrency 16, constrained by a JSON schema (`response_format`).

It prints output tokens/s at 16 over 1 (target >= 3x), TTFT p50 at 16, and the
constrained run's TPOT over the unconstrained one's at the same concurrency (target <= 1.5x).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.serving import serving  # noqa: E402
from benchmarks.vllm_bench import VllmBench  # noqa: E402

# At least 64 strings: no answer can close the object within the output length, so the constrained
# answers run exactly as long as the unconstrained ones and the two TPOTs compare like with like
# (shorter answers would mean more prefills between decode steps, not a dearer grammar).
SCHEMA = {
    "type": "object",
    "properties": {"notes": {"type": "array", "items": {"type": "string"}, "minItems": 64}},
    "required": ["notes"],
}
GRAMMAR = {"response_format": {"type": "json_schema", "json_schema": {"name": "note", "schema": SCHEMA}}}


def main() -> None:
    args = _args()
    config = yaml.safe_load(Path(args.config).read_text())
    llm = config["applications"][0]["args"]["llms"][0]
    tokenizer = str(
        REPO / config["applications"][0]["args"].get("model_store", "models") / llm["model"] / llm["version"]
    )
    with serving(args.config, args.base_url) as base_url:
        bench = VllmBench(base_url, llm["served_name"], tokenizer, args.input_len, args.output_len)
        # A warm-up: first requests pay lazy initialisation, and the schema's one compilation.
        bench.run(1, 2)
        bench.run(1, 2, GRAMMAR)
        alone = bench.run(1, args.prompts_at_1)
        batched = bench.run(16, args.prompts_at_16)
        constrained = bench.run(16, args.prompts_at_16, GRAMMAR)
        # Concurrency 1 again: on a shared machine the load can change between runs; the ratio is
        # taken against the faster of the two lone runs, so noise cannot flatter it.
        alone_again = bench.run(1, args.prompts_at_1)
    _report(max(alone, alone_again, key=lambda r: r["output_throughput"]), batched, constrained, args)
    lone = ", ".join(f"{r['output_throughput']:.1f}" for r in (alone, alone_again))
    print(f"(concurrency 1 before and after the concurrent runs: {lone} tok/s)")


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPO / "configs" / "local.yaml"))
    parser.add_argument("--base-url", help="measure a running server instead of starting one")
    parser.add_argument("--input-len", type=int, default=64)
    parser.add_argument("--output-len", type=int, default=64)
    parser.add_argument("--prompts-at-1", type=int, default=12)
    parser.add_argument("--prompts-at-16", type=int, default=64)
    return parser.parse_args()


def _report(alone: dict, batched: dict, constrained: dict, args: argparse.Namespace) -> None:
    print(f"\nCPU engine, tiny LLM, chat, {args.input_len} prompt tokens, {args.output_len} output tokens, ignore_eos")
    print(f"{'run':<26}{'output tok/s':>14}{'TTFT p50 ms':>14}{'TPOT p50 ms':>14}{'tokens/request':>16}")
    for label, r in (("concurrency 1", alone), ("concurrency 16", batched), ("concurrency 16 + grammar", constrained)):
        per_request = r["total_output_tokens"] / r["completed"]
        print(
            f"{label:<26}{r['output_throughput']:>14.1f}{r['median_ttft_ms']:>14.1f}"
            f"{r['median_tpot_ms']:>14.2f}{per_request:>16.1f}"
        )
    speedup = batched["output_throughput"] / alone["output_throughput"]
    grammar = constrained["median_tpot_ms"] / batched["median_tpot_ms"]
    print(f"\noutput tokens/s, 16 over 1: {speedup:.2f}x (target >= 3x)")
    print(f"TTFT p50 at 16: {batched['median_ttft_ms']:.1f} ms")
    print(f"TPOT p50, grammar over none, at 16: {grammar:.2f}x (target <= 1.5x)")


if __name__ == "__main__":
    main()
