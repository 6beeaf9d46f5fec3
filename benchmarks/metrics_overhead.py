"""What the app's metrics cost: chat and embedding p50 with metrics on and off, side by side in one run.

    python benchmarks/metrics_overhead.py [--requests 200]

One Ray (exporting metrics, as `make serve` does) runs two copies of a slim local.yaml (Ingress,
LLM, MiniLM): `/on` as configured and `/off` with `SERVE_METRICS_ENABLED=0` in its runtime env,
which turns every recording into a no-op. Requests alternate between the two, in an order that
flips every round, so drift on the shared machine (other processes, thermal) falls on both alike.
The p50 ratio is also taken over each fifth of the run: its range is the spread (target <= 1.03x).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.measuring import provenance, spread  # noqa: E402
from serve_app.tools.launch import free_port, set_ray_environment  # noqa: E402
from tests import serve_harness  # noqa: E402

CHAT = {"messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8, "seed": 0}
EMBED = {"model": "all-minilm-l6-v2", "input": ["a short sentence to embed"]}
KEEP = {"Ingress", "LLM", "TextEmbedder"}
PARTS = 5  # the run is cut in this many consecutive parts, each giving its own ratio


def main() -> None:
    args = _args()
    set_ray_environment()
    import ray

    ray.init(address="local", include_dashboard=False, namespace="serve", _metrics_export_port=free_port())
    try:
        port = free_port()
        serve_harness.start_serve(port)
        serve_harness.deploy_apps([_app("on", metrics=True), _app("off", metrics=False)], timeout_s=600)
        base = f"http://127.0.0.1:{port}"
        model = serve_harness.first_llm_name(serve_harness.load_config("local.yaml")["applications"][0])
        with httpx.Client(base_url=base, timeout=120) as http:
            rows = {
                "chat": _alternate(http, "/v1/chat/completions", {**CHAT, "model": model}, args.requests),
                "embedding": _alternate(http, "/v1/embeddings", EMBED, args.requests),
            }
    finally:
        from ray import serve

        serve.shutdown()
        ray.shutdown()
    _report(rows, args.requests)


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200, help="per route and per side")
    return parser.parse_args()


def _app(name: str, metrics: bool) -> dict:
    def slim(app: dict) -> None:
        serve_harness.one_llm(app)
        args = app["args"]
        for section in ("speech", "video_summary"):
            args.pop(section, None)
        args["vision"] = {"text_embedder": args["vision"]["text_embedder"]}
        app["deployments"] = [d for d in app["deployments"] if d["name"] in KEEP]
        if not metrics:
            app["runtime_env"] = {"env_vars": {"SERVE_METRICS_ENABLED": "0"}}

    return serve_harness.application("local.yaml", name=name, route_prefix=f"/{name}", edit=slim)


def _alternate(http: httpx.Client, route: str, body: dict, requests: int) -> dict[str, list[float]]:
    latencies: dict[str, list[float]] = {"on": [], "off": []}
    for side in ("on", "off"):  # warm-up: first calls pay for lazy initialisation
        for _ in range(5):
            http.post(f"/{side}{route}", json=body).raise_for_status()
    for i in range(requests):
        for side in ("on", "off") if i % 2 == 0 else ("off", "on"):
            started = time.perf_counter()
            http.post(f"/{side}{route}", json=body).raise_for_status()
            latencies[side].append(time.perf_counter() - started)
    return latencies


def _report(rows: dict[str, dict[str, list[float]]], requests: int) -> None:
    print(f"\n{provenance()}")
    print(f"{requests} requests per route and side, alternating; p50 and p90 in ms")
    print(f"{'':12}{'on p50':>9}{'off p50':>9}{'on p90':>9}{'off p90':>9}{'p50 on/off':>12}   over {PARTS} parts")
    for route, sides in rows.items():
        p50 = {s: 1000 * statistics.median(v) for s, v in sides.items()}
        p90 = {s: 1000 * statistics.quantiles(v, n=10)[-1] for s, v in sides.items()}
        ratio = p50["on"] / p50["off"]
        size = max(1, requests // PARTS)
        parts = [
            statistics.median(sides["on"][i : i + size]) / statistics.median(sides["off"][i : i + size])
            for i in range(0, size * PARTS, size)
            if sides["on"][i : i + size]
        ]
        print(
            f"{route:12}{p50['on']:9.2f}{p50['off']:9.2f}{p90['on']:9.2f}{p90['off']:9.2f}{ratio:11.3f}x"
            f"   {spread(parts)}"
        )


if __name__ == "__main__":
    main()
