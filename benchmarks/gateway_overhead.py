"""What the gateway costs per request, and how exactly its limits hold, measured in one run.

    python benchmarks/gateway_overhead.py [--requests 300] [--limit 50]

One Ray runs two slim apps side by side, each an Ingress (2 replicas) and the tiny LLM:
`/off` from configs/local.yaml (no gateway) and `/on` from configs/gateway.yaml (keys, limits and
usage logging, embedded state: the GatewayState deployment over SQLite). Requests alternate
between the two, in an order that flips every round, so drift on the shared machine falls on both
alike. Overhead: p50 on minus p50 off, for GET /v1/models (the cheapest routed call: one card probe)
and a 1-token chat. Precision: 8 concurrent clients send 2 x limit chats with one key whose
rpm_limit is `limit`, across the 2 Ingress replicas; the answer is how many were allowed. The
burst starts early in a minute: windows are fixed minutes, as LiteLLM's are, so a burst across a
boundary may rightly be allowed up to twice the limit.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from serve_app.gateway.state import window_reset_s  # noqa: E402
from serve_app.tools.launch import free_port, set_ray_environment  # noqa: E402
from tests import serve_harness  # noqa: E402
from tests.gateway_harness import gateway_app, open_app  # noqa: E402

MASTER = "sk-bench-master-0123456789"
MODEL = "tiny-qwen2"
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 1, "seed": 0}


def main() -> None:
    args = _args()
    set_ray_environment()
    import ray

    # Logical CPUs are bookkeeping: two slim apps side by side need a little more than a 2-core host declares.
    ray.init(address="local", num_cpus=4, include_dashboard=False, namespace="serve")
    try:
        port = free_port()
        serve_harness.start_serve(port)
        off = open_app("off")
        serve_harness.deployment_options(off, "Ingress")["num_replicas"] = 2
        on = gateway_app("on", Path(tempfile.mkdtemp(prefix="gateway-bench-")), MASTER, ingress_replicas=2)
        serve_harness.deploy_apps([off, on], timeout_s=600)
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=120) as http:
            admin = {"authorization": f"Bearer {MASTER}"}
            unlimited = http.post("/on/key/generate", json={"rpm_limit": 10**6, "tpm_limit": 10**9}, headers=admin)
            headers = {"authorization": f"Bearer {unlimited.raise_for_status().json()['key']}"}
            rows = {
                "models": _alternate(http, "GET", "/v1/models", None, headers, args.requests),
                "chat": _alternate(http, "POST", "/v1/chat/completions", CHAT, headers, args.requests),
            }
            limited = http.post("/on/key/generate", json={"rpm_limit": args.limit}, headers=admin).json()["key"]
            statuses = _burst(base, limited, 2 * args.limit)
    finally:
        from ray import serve

        serve.shutdown()
        ray.shutdown()
    _report(rows, args.requests, statuses, args.limit)


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300, help="per route and per side")
    parser.add_argument("--limit", type=int, default=50, help="rpm_limit of the precision key")
    return parser.parse_args()


def _alternate(http: httpx.Client, method: str, route: str, body: dict | None, headers: dict, requests: int) -> dict:
    latencies: dict[str, list[float]] = {"on": [], "off": []}

    def call(side: str) -> float:
        started = time.perf_counter()
        http.request(method, f"/{side}{route}", json=body, headers=headers if side == "on" else None).raise_for_status()
        return time.perf_counter() - started

    for side in ("on", "off"):  # warm-up: first calls pay for lazy initialisation
        for _ in range(10):
            call(side)
    for i in range(requests):
        for side in ("on", "off") if i % 2 == 0 else ("off", "on"):
            latencies[side].append(call(side))
    return latencies


def _burst(base: str, key: str, requests: int, clients: int = 8, room_s: float = 20.0) -> list[int]:
    if window_reset_s(time.time()) < room_s:
        time.sleep(window_reset_s(time.time()) + 0.1)
    headers = {"authorization": f"Bearer {key}"}
    pool = [httpx.Client(base_url=f"{base}/on", timeout=120) for _ in range(clients)]
    try:
        with ThreadPoolExecutor(clients) as executor:
            return list(
                executor.map(
                    lambda i: pool[i % clients].post("/v1/chat/completions", json=CHAT, headers=headers).status_code,
                    range(requests),
                )
            )
    finally:
        for client in pool:
            client.close()


def _report(rows: dict, requests: int, statuses: list[int], limit: int) -> None:
    print(f"\n{requests} requests per route and side, alternating; p50 and p90 in ms")
    print(f"{'':8}{'on p50':>9}{'off p50':>9}{'on p90':>9}{'off p90':>9}{'p50 on-off':>12}{'on/off':>8}")
    for route, sides in rows.items():
        p50 = {s: 1000 * statistics.median(v) for s, v in sides.items()}
        p90 = {s: 1000 * statistics.quantiles(v, n=10)[-1] for s, v in sides.items()}
        delta, ratio = p50["on"] - p50["off"], p50["on"] / p50["off"]
        print(
            f"{route:8}{p50['on']:9.2f}{p50['off']:9.2f}{p90['on']:9.2f}{p90['off']:9.2f}{delta:10.2f}ms{ratio:7.3f}x"
        )
    allowed, refused = statuses.count(200), statuses.count(429)
    other = len(statuses) - allowed - refused
    verdict = "exact" if allowed == limit else f"off by {allowed - limit}"
    print(
        f"\nlimit precision: rpm_limit {limit}, {len(statuses)} requests from 8 clients over 2 Ingress replicas: "
        f"{allowed} allowed, {refused} refused (429), {other} other ({verdict})"
    )


if __name__ == "__main__":
    main()
