"""Many LLMs, measured: adapter cold load, mixed-adapter throughput, split accuracy, a live canary move.

    python benchmarks/llm_variants.py [--split-requests 1000] [--mixed-requests 48]

One Ray runs a slim local.yaml (the Ingress and its two LLMs: tiny-qwen2 with two LoRA adapters,
and tiny-qwen2-v2; the `assistant` alias splits 90/10 between the versions). It prints:
- adapter cold load: the first request to each adapter against the same request once loaded (the
  first adapter on a replica also pays for peft wrapping the model and Serve starting its multiplexer);
- throughput at 8 concurrent requests mixed over the base and two adapters, against the base alone
  (completion tokens per second, same prompts and lengths, measured back to back);
- split accuracy over --split-requests requests to the alias (no user: a weighted draw each), and
  stickiness: users sending 10 requests each, the share that stayed on one variant;
- a live weight change (10% -> 50%) through the Ingress's user_config while 4 clients keep
  sending, with the failed requests during the change and the share after it.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from serve_app.tools.launch import free_port, set_ray_environment  # noqa: E402
from tests import serve_harness  # noqa: E402

BASE, V2, ADAPTERS = "tiny-qwen2", "tiny-qwen2-v2", ("tiny-qwen2-lora-a", "tiny-qwen2-lora-b")
PROMPT = [{"role": "user", "content": "Tell me about the sea."}]


def main() -> None:
    args = _args()
    set_ray_environment()
    import ray

    ray.init(address="local", include_dashboard=False, namespace="serve")
    try:
        port = free_port()
        serve_harness.start_serve(port)
        serve_harness.deploy_apps([_app(10)], timeout_s=600)
        asyncio.run(_measure(f"http://127.0.0.1:{port}", args))
    finally:
        from ray import serve

        serve.shutdown()
        ray.shutdown()


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split-requests", type=int, default=1000)
    parser.add_argument("--mixed-requests", type=int, default=48, help="per side of the throughput ratio")
    parser.add_argument("--users", type=int, default=50, help="for stickiness, 10 requests each")
    return parser.parse_args()


def _app(canary_weight: float) -> dict:
    def slim(app: dict) -> None:
        for section in ("speech", "video_summary", "vision"):
            app["args"].pop(section, None)
        app["deployments"] = [d for d in app["deployments"] if d["name"] in ("Ingress", "LLM", "LLM-tiny-qwen2-v2")]
        aliases = serve_harness.deployment_options(app, "Ingress")["user_config"]["aliases"]
        aliases[0]["targets"] = [{"model": BASE, "weight": 100 - canary_weight}, {"model": V2, "weight": canary_weight}]

    return serve_harness.application("local.yaml", edit=slim)


def _chat(model: str, max_tokens: int, **extra) -> dict:
    return {"model": model, "messages": PROMPT, "max_tokens": max_tokens, "temperature": 0, **extra}


async def _post(http: httpx.AsyncClient, body: dict) -> httpx.Response:
    reply = await http.post("/v1/chat/completions", json=body)
    reply.raise_for_status()
    return reply


async def _measure(base_url: str, args: argparse.Namespace) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=120) as http:
        await _post(http, _chat(BASE, 4))  # the base's first request pays for lazy initialisation
        await _cold_load(http)
        await _throughput(http, args.mixed_requests)
        await _split(http, args.split_requests, args.users)
        await _live_change(http)


async def _cold_load(http: httpx.AsyncClient) -> None:
    print("\nadapter cold load (first request vs the same request once loaded, 4 tokens)")
    for adapter in ADAPTERS:
        timings = []
        for _ in range(4):
            started = time.perf_counter()
            await _post(http, _chat(adapter, 4))
            timings.append(time.perf_counter() - started)
        warm = statistics.median(timings[1:])
        cold = timings[0]
        print(f"  {adapter}: cold {1000 * cold:.1f} ms, warm {1000 * warm:.1f} ms, load ~{1000 * (cold - warm):.1f} ms")


async def _tokens_per_s(http: httpx.AsyncClient, models: list[str], requests: int) -> float:
    queue = [models[i % len(models)] for i in range(requests)]
    tokens = 0

    async def client() -> None:
        nonlocal tokens
        while queue:
            reply = await _post(http, _chat(queue.pop(), 32, ignore_eos=True, seed=0))
            tokens += reply.json()["usage"]["completion_tokens"]

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(8)))
    return tokens / (time.perf_counter() - started)


async def _throughput(http: httpx.AsyncClient, requests: int) -> None:
    # Rounds alternate base and mixed, so drift on a shared machine falls on both alike.
    base, mixed = [], []
    for _ in range(3):
        base.append(await _tokens_per_s(http, [BASE], requests))
        mixed.append(await _tokens_per_s(http, [BASE, *ADAPTERS], requests))
    b, m = statistics.median(base), statistics.median(mixed)
    print(f"\nthroughput at 8 concurrent, {requests} requests of 32 tokens per side, median of 3 alternating rounds")
    print(f"  base alone {b:.1f} tok/s, mixed base+2 adapters {m:.1f} tok/s: mixed/base {m / b:.2f}x")


async def _split(http: httpx.AsyncClient, requests: int, users: int) -> None:
    sem = asyncio.Semaphore(16)

    async def variant(**extra) -> str:
        async with sem:
            return (await _post(http, _chat("assistant", 1, **extra))).headers["x-model-variant"]

    seen = Counter(await asyncio.gather(*(variant() for _ in range(requests))))
    print(f"\nsplit over {requests} requests to `assistant` (configured {BASE} 90 / {V2} 10)")
    for model in (BASE, V2):
        print(f"  {model}: {seen[model]} = {100 * seen[model] / requests:.1f}%")
    per_user = await asyncio.gather(
        *(asyncio.gather(*(variant(user=f"user-{u}") for _ in range(10))) for u in range(users))
    )
    sticky = sum(len(set(v)) == 1 for v in per_user)
    on_canary = sum(v[0] == V2 for v in per_user)
    print(f"  stickiness: {sticky}/{users} users stayed on one variant ({100 * sticky / users:.0f}%)")
    print(f"  {on_canary} of {users} users on {V2}")


async def _live_change(http: httpx.AsyncClient) -> None:
    outcomes: list[tuple[float, int, str]] = []
    stop = asyncio.Event()

    async def client(n: int) -> None:
        while not stop.is_set():
            try:
                reply = await http.post("/v1/chat/completions", json=_chat("assistant", 1))
                outcomes.append((time.perf_counter(), reply.status_code, reply.headers.get("x-model-variant", "")))
            except httpx.HTTPError:
                outcomes.append((time.perf_counter(), 0, ""))

    clients = [asyncio.create_task(client(n)) for n in range(4)]
    await asyncio.sleep(3)
    changed_at = time.perf_counter()
    await asyncio.to_thread(serve_harness.deploy_apps, [_app(50)], 300)
    applied_at = time.perf_counter()
    await asyncio.sleep(5)
    stop.set()
    await asyncio.gather(*clients)
    failed = sum(status != 200 for _, status, _ in outcomes)
    after = [v for t, s, v in outcomes if t > applied_at and s == 200]
    share = 100 * sum(v == V2 for v in after) / max(len(after), 1)
    print(f"\nlive weight change {V2} 10% -> 50% under 4 clients ({len(outcomes)} requests in all)")
    print(f"  applied in {applied_at - changed_at:.1f} s; failed requests: {failed}; {V2} share after: {share:.1f}%")


if __name__ == "__main__":
    main()
