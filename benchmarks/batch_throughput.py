"""The Batch API against the same work sent over HTTP, and online latency while a batch runs; one run.

1. Chat: N lines of T tokens (`ignore_eos`) through one batch, vs the same N requests sent over HTTP
   at concurrency C (what a user's loop does). Target: batch wall time <= 0.6x of HTTP.
2. Embeddings: E MiniLM inputs through one batch, vs the same inputs sent one request at a time.
   Target: batch >= 5x faster.
3. Online chat TTFT p50 (streamed) while a big chat batch runs, vs idle. Target: <= 1.25x.

Each pair is measured alternately, `--repeats` times, and every ratio is printed with its spread.

    python benchmarks/batch_throughput.py                     # starts configs/local.yaml itself
    python benchmarks/batch_throughput.py --base-url http://127.0.0.1:8000 --lines 128 --repeats 1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.serving import serving  # noqa: E402

LLM, EMBEDDER = "tiny-qwen2", "all-minilm-l6-v2"
CHAT, EMBEDDINGS = "/v1/chat/completions", "/v1/embeddings"


def main() -> None:
    args = _args()
    with serving(args.config, args.base_url) as base_url:
        asyncio.run(_run(base_url, args))


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPO / "configs" / "local.yaml"))
    parser.add_argument("--base-url", help="measure a running server instead of starting one")
    parser.add_argument("--lines", type=int, default=512, help="chat lines (and HTTP requests) per measurement")
    parser.add_argument("--tokens", type=int, default=32, help="tokens per chat answer (ignore_eos)")
    parser.add_argument("--concurrency", type=int, default=16, help="HTTP requests in flight for the chat loop")
    parser.add_argument("--embeddings", type=int, default=5000, help="embedding inputs per measurement")
    parser.add_argument("--background-lines", type=int, default=2000, help="the batch running under online TTFT")
    parser.add_argument("--online", type=int, default=30, help="online streamed chats per TTFT measurement")
    parser.add_argument("--repeats", type=int, default=2)
    return parser.parse_args()


def chat_body(i: int, tokens: int) -> dict:
    content = f"Request {i}: write about the sea."
    return {
        "model": LLM,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": tokens,
        "ignore_eos": True,
        "seed": i,
    }


def embedding_body(i: int) -> dict:
    return {"model": EMBEDDER, "input": f"sentence number {i} about boats and the sea"}


async def _run(base_url: str, args: argparse.Namespace) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=600) as client:
        await client.post(CHAT, json=chat_body(0, 4))  # warm the path
        chat, embed, ttft = [], [], []
        for repeat in range(args.repeats):
            pair = [
                lambda: _batch(client, CHAT, [chat_body(i, args.tokens) for i in range(args.lines)]),
                lambda: _http(client, CHAT, [chat_body(i, args.tokens) for i in range(args.lines)], args.concurrency),
            ]
            batch_s, http_s = await _alternate(pair, repeat)
            chat.append((batch_s, http_s))
            print(f"chat {args.lines}x{args.tokens}: batch {batch_s:.1f}s, HTTP c{args.concurrency} {http_s:.1f}s")
            pair = [
                lambda: _batch(client, EMBEDDINGS, [embedding_body(i) for i in range(args.embeddings)]),
                lambda: _http(client, EMBEDDINGS, [embedding_body(i) for i in range(args.embeddings)], 1),
            ]
            batch_s, http_s = await _alternate(pair, repeat)
            embed.append((batch_s, http_s))
            print(f"embeddings {args.embeddings}: batch {batch_s:.1f}s, HTTP one by one {http_s:.1f}s")
            idle = await _ttft(client, args.online)
            busy = await _ttft_under_batch(client, args)
            ttft.append((busy, idle))
            print(f"online TTFT p50: idle {idle * 1000:.0f} ms, under a batch {busy * 1000:.0f} ms")
    _report("chat: batch / HTTP wall time (target <= 0.6)", [b / h for b, h in chat])
    _report("embeddings: HTTP / batch wall time (target >= 5)", [h / b for b, h in embed])
    _report("online TTFT p50: under a batch / idle (target <= 1.25)", [b / i for b, i in ttft])


async def _alternate(pair: list, repeat: int) -> tuple[float, float]:
    """Both measurements, the first one first on even repeats: neither always runs on a warmer machine."""
    order = (0, 1) if repeat % 2 == 0 else (1, 0)
    times = [0.0, 0.0]
    for i in order:
        times[i] = await pair[i]()
    return times[0], times[1]


async def _batch(client: httpx.AsyncClient, endpoint: str, bodies: list[dict]) -> float:
    started = time.perf_counter()
    batch = await _submit(client, endpoint, bodies)
    while batch["status"] not in ("completed", "failed", "expired", "cancelled"):
        await asyncio.sleep(0.2)
        batch = (await client.get(f"/v1/batches/{batch['id']}")).json()
    elapsed = time.perf_counter() - started
    if batch["status"] != "completed" or batch["request_counts"]["failed"]:
        raise SystemExit(f"batch {batch['id']} {batch['status']}: {batch['request_counts']} {batch.get('errors')}")
    return elapsed


async def _submit(client: httpx.AsyncClient, endpoint: str, bodies: list[dict]) -> dict:
    lines = [
        json.dumps({"custom_id": str(i), "method": "POST", "url": endpoint, "body": b}) for i, b in enumerate(bodies)
    ]
    files = {"file": ("bench.jsonl", "\n".join(lines).encode())}
    uploaded = (await client.post("/v1/files", data={"purpose": "batch"}, files=files)).json()
    body = {"input_file_id": uploaded["id"], "endpoint": endpoint, "completion_window": "24h"}
    return (await client.post("/v1/batches", json=body)).json()


async def _http(client: httpx.AsyncClient, endpoint: str, bodies: list[dict], concurrency: int) -> float:
    gate = asyncio.Semaphore(concurrency)

    async def one(body: dict) -> None:
        async with gate:
            reply = await client.post(endpoint, json=body)
            reply.raise_for_status()

    started = time.perf_counter()
    await asyncio.gather(*(one(b) for b in bodies))
    return time.perf_counter() - started


async def _ttft(client: httpx.AsyncClient, count: int) -> float:
    """p50 of time to the first content chunk of `count` streamed chats, one after another."""
    samples = []
    for i in range(count):
        body = {**chat_body(10_000 + i, 16), "stream": True}
        started = time.perf_counter()
        first = None
        async with client.stream("POST", CHAT, json=body) as reply:
            async for line in reply.aiter_lines():  # read to the end, so the request is done before the next
                if first is None and line.startswith("data: ") and '"content"' in line:
                    first = time.perf_counter() - started
        samples.append(first)
    return statistics.median(samples)


async def _ttft_under_batch(client: httpx.AsyncClient, args: argparse.Namespace) -> float:
    batch = await _submit(client, CHAT, [chat_body(i, args.tokens) for i in range(args.background_lines)])
    while (await client.get(f"/v1/batches/{batch['id']}")).json()["request_counts"]["completed"] < 16:
        await asyncio.sleep(0.2)  # the batch is running at full speed
    try:
        return await _ttft(client, args.online)
    finally:
        await client.post(f"/v1/batches/{batch['id']}/cancel")


def _report(label: str, ratios: list[float]) -> None:
    spread = f"min {min(ratios):.2f}, max {max(ratios):.2f}" if len(ratios) > 1 else "one run"
    print(f"{label}: median {statistics.median(ratios):.2f} ({spread}, n={len(ratios)})")


if __name__ == "__main__":
    main()
