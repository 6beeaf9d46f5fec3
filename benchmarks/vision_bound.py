"""Vision through HTTP against what bounds it: the model in-process, and Ray Serve's own cost.

    python benchmarks/vision_bound.py [--rounds 3]

One Ray runs a slim `configs/local.yaml` (Ingress, the tiny LLM, CLIP, YOLO) and beside it, at
/bare, a bare Serve app with the same hops and batching around no model (benchmarks/bare_serve.py).
Each round, in an order that rotates between rounds:

  CLIP  images/s, 32 requests in flight, each one PNG as base64 JSON to /v1/embeddings, on the app
        and on the bare app; open_clip in-process in batches of 32, each image's PNG decode
        included (the server decodes every image it gets: without it the reference does less work);
  YOLO  p50 of sequential multipart uploads to /v1/detections, on both apps; ultralytics
        in-process, the decode included.

A request through Serve pays Serve's cost and the model's on the same two cores, so the bound is
1 / (1 / bare + 1 / in-process) images/s for CLIP, and the bare p50 plus the in-process p50 for
YOLO. Printed with their spread over the rounds: app / in-process (targets: CLIP >= 0.5x, YOLO
p50 <= 1.3x) and app / bound (target: within 1.2x, where the first is out of Serve's reach).
"""

from __future__ import annotations

import argparse
import asyncio
import io
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
from tests.images import COLORS, SHAPES, b64, png  # noqa: E402

KEEP = {"Ingress", "LLM", "ClipEmbedder", "Detector"}
WAYS = ("app", "bare", "local")


def main() -> None:
    args = _args()
    images = [png(s, c, size=(320 + 16 * (i % 8), 240)) for i, (s, c) in enumerate(_combos(args.images))]
    set_ray_environment()
    import ray

    # Replica logs stay in their files: printing every access line here would bill this process for it.
    ray.init(address="local", include_dashboard=False, namespace="serve", log_to_driver=False)
    try:
        port = free_port()
        serve_harness.start_serve(port)
        app = _app()
        serve_harness.deploy_apps([app, _bare(app)], timeout_s=600)
        local = _Local(app)
        base = f"http://127.0.0.1:{port}"
        clip, yolo = app["args"]["vision"]["clip"]["served_name"], app["args"]["vision"]["detector"]["served_name"]
        rounds = asyncio.run(_rounds(base, clip, yolo, local, images, args))
    finally:
        from ray import serve

        serve.shutdown()
        ray.shutdown()
    _report(rounds, args)


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=128, help="distinct PNGs per CLIP measurement")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--detections", type=int, default=30, help="sequential detection requests")
    parser.add_argument("--rounds", type=int, default=3)
    return parser.parse_args()


def _combos(n: int) -> list[tuple[str, str]]:
    pairs = [(s, c) for s in SHAPES for c in COLORS]
    return [pairs[i % len(pairs)] for i in range(n)]


def _app() -> dict:
    def slim(app: dict) -> None:
        serve_harness.one_llm(app)
        args = app["args"]
        for section in ("speech", "video_summary", "batch"):
            args.pop(section, None)
        vision = args["vision"]
        args["vision"] = {
            k: v for k, v in vision.items() if k in ("max_image_bytes", "max_image_pixels", "detector", "clip")
        }
        app["deployments"] = [d for d in app["deployments"] if d["name"] in KEEP]

    return serve_harness.application("local.yaml", edit=slim)


def _bare(app: dict) -> dict:
    """The bare app with the real one's queue sizes (the Ingress's for its ingress, CLIP's for its model: at
    Serve's default of 5 ongoing requests its router backs off and the bound would be Serve's defaults'),
    batching (CLIP's and YOLO's) and the Ingress's Ray settings (handles routing on its event loop); no
    logical CPUs taken."""
    env = {"PYTHONPATH": str(REPO), "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "0"}
    queues = ("max_ongoing_requests", "max_queued_requests")
    mirror = {"BareIngress": "Ingress", "NoModel": "ClipEmbedder"}
    deployments = [
        {"name": bare, "ray_actor_options": {"num_cpus": 0}}
        | {k: v for k, v in serve_harness.deployment_options(app, real).items() if k in queues}
        for bare, real in mirror.items()
    ]
    vision = app["args"]["vision"]
    return {
        "name": "bare",
        "route_prefix": "/bare",
        "import_path": "benchmarks.bare_serve:build_app",
        "args": {"batching": {"embed": vision["clip"]["batching"], "detect": vision["detector"]["batching"]}},
        "runtime_env": {"env_vars": env},
        "deployments": deployments,
    }


class _Local:
    """CLIP and YOLO loaded in this process as their replicas load them, with one torch thread each."""

    def __init__(self, app: dict):
        import torch

        from serve_app.common.model_store import verify
        from serve_app.common.runtime import configure_offline_runtime
        from serve_app.config import parse_app_config

        config = parse_app_config(app["args"])
        configure_offline_runtime(config.data_dir)
        import open_clip
        from ultralytics import YOLO

        torch.set_num_threads(1)  # Ray sets OMP_NUM_THREADS to int(num_cpus), at least 1
        self._torch = torch
        clip = verify(config.model_store, config.vision.clip.model, config.vision.clip.version)
        self._clip, _, self._preprocess = open_clip.create_model_and_transforms(f"local-dir:{clip.path}")
        self._clip.eval()
        det = config.vision.detector
        self._yolo = YOLO(str(verify(config.model_store, det.model, det.version).path / "model.pt"), task="detect")
        self._imgsz = det.imgsz

    def clip_ips(self, images: list[bytes], batch: int) -> float:
        started = time.perf_counter()
        for i in range(0, len(images), batch):
            pixels = [self._preprocess(_decode(data)) for data in images[i : i + batch]]
            with self._torch.inference_mode():
                self._clip.encode_image(self._torch.stack(pixels))
        return len(images) / (time.perf_counter() - started)

    def detect_s(self, data: bytes) -> float:
        started = time.perf_counter()
        self._yolo.predict(_decode(data), imgsz=self._imgsz, rect=False, verbose=False)
        return time.perf_counter() - started


def _decode(data: bytes):
    from PIL import Image

    return Image.open(io.BytesIO(data)).convert("RGB")


async def _rounds(base: str, clip: str, yolo: str, local: _Local, images: list[bytes], args) -> list[dict]:
    async with httpx.AsyncClient(base_url=base, timeout=300) as http:

        async def embed(prefix: str, image: bytes) -> None:
            reply = await http.post(f"{prefix}/v1/embeddings", json={"model": clip, "input": [{"image": b64(image)}]})
            reply.raise_for_status()

        async def detect(prefix: str, image: bytes) -> float:
            started = time.perf_counter()
            files = {"image": ("i.png", image, "image/png")}
            reply = await http.post(f"{prefix}/v1/detections", files=files, data={"model": yolo})
            reply.raise_for_status()
            return time.perf_counter() - started

        async def clip_ips(prefix: str) -> float:
            gate = asyncio.Semaphore(args.concurrency)

            async def gated(image: bytes) -> None:
                async with gate:
                    await embed(prefix, image)

            started = time.perf_counter()
            await asyncio.gather(*(gated(image) for image in images))
            return len(images) / (time.perf_counter() - started)

        for prefix in ("", "/bare"):  # warm-up: first requests pay lazy initialisation
            await clip_ips(prefix)
            for image in images[:4]:
                await detect(prefix, image)
        local.clip_ips(images[:32], args.concurrency)
        rounds = []
        for number in range(args.rounds):
            order = WAYS[number % 3 :] + WAYS[: number % 3]
            figures: dict[str, dict] = {}
            for way in order:
                picks = [images[i % len(images)] for i in range(args.detections)]
                if way == "local":
                    figures[way] = {
                        "clip_ips": local.clip_ips(images, args.concurrency),
                        "detect_p50_ms": 1000 * statistics.median(local.detect_s(image) for image in picks),
                    }
                else:
                    prefix = "" if way == "app" else "/bare"
                    ips = await clip_ips(prefix)
                    latencies = [await detect(prefix, image) for image in picks]
                    figures[way] = {"clip_ips": ips, "detect_p50_ms": 1000 * statistics.median(latencies)}
            rounds.append(figures)
            print(
                f"round {number + 1}: CLIP images/s "
                + ", ".join(f"{w} {figures[w]['clip_ips']:.1f}" for w in WAYS)
                + "; YOLO p50 ms "
                + ", ".join(f"{w} {figures[w]['detect_p50_ms']:.1f}" for w in WAYS),
                flush=True,
            )
    return rounds


def _report(rounds: list[dict], args: argparse.Namespace) -> None:
    def bound_ips(r: dict) -> float:
        return 1 / (1 / r["bare"]["clip_ips"] + 1 / r["local"]["clip_ips"])

    def bound_ms(r: dict) -> float:
        return r["bare"]["detect_p50_ms"] + r["local"]["detect_p50_ms"]

    print(f"\n{provenance()}")
    print(
        f"{len(rounds)} rounds; CLIP: {args.images} PNGs, {args.concurrency} in flight; YOLO: {args.detections} in turn"
    )
    print(f"{'':24}" + "".join(f"{h:>12}" for h in ("app", "bare Serve", "in-process", "bound")))
    for label, key, bound in (("CLIP images/s", "clip_ips", bound_ips), ("YOLO p50 ms", "detect_p50_ms", bound_ms)):
        medians = [statistics.median(r[way][key] for r in rounds) for way in WAYS]
        medians.append(statistics.median(bound(r) for r in rounds))
        print(f"{label:24}" + "".join(f"{m:>12.1f}" for m in medians))
    ratios = (
        ("CLIP app / in-process", [r["app"]["clip_ips"] / r["local"]["clip_ips"] for r in rounds], ">= 0.5x"),
        ("CLIP app / bound", [r["app"]["clip_ips"] / bound_ips(r) for r in rounds], ">= 0.83x (1 / 1.2)"),
        ("YOLO app / in-process", [r["app"]["detect_p50_ms"] / r["local"]["detect_p50_ms"] for r in rounds], "<= 1.3x"),
        ("YOLO app / bound", [r["app"]["detect_p50_ms"] / bound_ms(r) for r in rounds], "<= 1.2x"),
    )
    for label, values, target in ratios:
        print(f"{label:24}{spread(values)}   target {target}")


if __name__ == "__main__":
    main()
