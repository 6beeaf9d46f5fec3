"""Chat latency through the HTTP ingress vs the same engine called in-process, in one run.

    python benchmarks/chat_latency.py                      # starts configs/local.yaml itself
    python benchmarks/chat_latency.py --base-url http://127.0.0.1:8000   # an already running server

Both sides run the same chat request (same prompt tokens, same seed, same
max_tokens) sequentially and then 8 at a time; the ratio is the serving overhead:
HTTP + JSON + ingress replica + handle hop + LLM replica around the same engine.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import httpx
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.serving import serving  # noqa: E402

MESSAGES = [{"role": "user", "content": "Write one sentence about the sea."}]


def main() -> None:
    args = _args()
    config = yaml.safe_load(Path(args.config).read_text())
    llm = config["applications"][0]["args"]["llms"][0]
    with serving(args.config, args.base_url) as base_url:
        http = asyncio.run(_measure_http(base_url, llm["served_name"], args))
    direct = asyncio.run(_measure_direct(config["applications"][0], args))
    _report(http, direct, args)


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPO / "configs" / "local.yaml"))
    parser.add_argument("--base-url", help="measure a running server instead of starting one")
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=8)
    return parser.parse_args()


async def _measure_http(base_url: str, model: str, args: argparse.Namespace) -> dict:
    body = {"model": model, "messages": MESSAGES, "max_tokens": args.max_tokens, "seed": 0}
    async with httpx.AsyncClient(base_url=base_url, timeout=120) as client:

        async def one() -> int:
            reply = await client.post("/v1/chat/completions", json=body)
            reply.raise_for_status()
            return reply.json()["usage"]["completion_tokens"]

        return await _run(one, args)


async def _measure_direct(app: dict, args: argparse.Namespace) -> dict:
    import torch

    from deployments.llm import openai_mapping
    from deployments.llm.engines.transformers_engine import TransformersEngine
    from serve_app.common.model_store import verify
    from serve_app.config import parse_app_config
    from serve_app.protocol import ChatCompletionRequest

    config = parse_app_config(app["args"])
    # Same torch threads as the replica, where Ray sets OMP_NUM_THREADS to its num_cpus.
    llm_options = next(d for d in app["deployments"] if d["name"] == "LLM")
    torch.set_num_threads(config.llm.cpu_threads or max(1, int(llm_options["ray_actor_options"]["num_cpus"])))
    ref = verify(config.model_store, config.llm.model, config.llm.version)
    engine = TransformersEngine.create(ref.path, config.llm)
    request = ChatCompletionRequest(model=config.llm.served_name, messages=MESSAGES, max_tokens=args.max_tokens, seed=0)

    async def one() -> int:
        prompt_ids = openai_mapping.chat_prompt_ids(engine.tokenizer, request)
        settings = openai_mapping.sampling_settings(request, len(prompt_ids), engine.max_model_len, "messages")
        return sum([d.new_tokens async for d in engine.generate(prompt_ids, settings, "bench")])

    return await _run(one, args)


async def _run(one, args: argparse.Namespace) -> dict:
    for _ in range(3):  # warm-up: first calls pay for lazy initialisation
        await one()
    latencies, tokens = [], []
    for _ in range(args.requests):
        started = time.perf_counter()
        tokens.append(await one())
        latencies.append(time.perf_counter() - started)
    gate = asyncio.Semaphore(args.concurrency)

    async def gated() -> int:
        async with gate:
            return await one()

    started = time.perf_counter()
    burst = await asyncio.gather(*(gated() for _ in range(args.requests)))
    burst_s = time.perf_counter() - started
    return {
        "p50_ms": 1000 * statistics.median(latencies),
        "p90_ms": 1000 * statistics.quantiles(latencies, n=10)[-1],
        "tokens": statistics.mean(tokens),
        "burst_req_s": len(burst) / burst_s,
    }


def _report(http: dict, direct: dict, args: argparse.Namespace) -> None:
    print(
        f"\nchat completion, max_tokens={args.max_tokens}: {args.requests} requests one by one, "
        f"then {args.requests} with {args.concurrency} in flight"
    )
    print(f"{'':22}{'p50 ms':>10}{'p90 ms':>10}{'tokens':>9}{'req/s':>9}")
    for name, row in (("HTTP (ingress+LLM)", http), ("engine in-process", direct)):
        print(f"{name:22}{row['p50_ms']:10.1f}{row['p90_ms']:10.1f}{row['tokens']:9.1f}{row['burst_req_s']:9.1f}")
    print(
        f"ratio HTTP/direct p50: {http['p50_ms'] / direct['p50_ms']:.2f}x; "
        f"throughput at {args.concurrency} in flight, direct/HTTP: {direct['burst_req_s'] / http['burst_req_s']:.2f}x"
    )


if __name__ == "__main__":
    main()
