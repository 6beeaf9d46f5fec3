"""Vision speed, measured side by side in one run:

1. CLIP image embeddings, images/s: batching vs none, through HTTP (1 request in flight, so every
   forward pass carries one image, vs many in flight, which @serve.batch packs into shared passes)
   and in-process (open_clip forward passes of 1 image vs of a whole batch).
2. YOLO detection latency: HTTP (multipart upload -> ingress -> Detector replica) vs ultralytics
   called directly on the same images with the same settings and torch thread count.

    python benchmarks/vision_throughput.py                     # starts configs/local.yaml itself
    python benchmarks/vision_throughput.py --base-url http://127.0.0.1:8000
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
from tests.images import COLORS, SHAPES, b64, png  # noqa: E402


def main() -> None:
    args = _args()
    app = yaml.safe_load(Path(args.config).read_text())["applications"][0]
    vision = app["args"]["vision"]
    images = [png(shape, color, size=(320 + 16 * i, 240)) for i, (shape, color) in enumerate(_combos(args.images))]
    with serving(args.config, args.base_url) as base_url:
        http = asyncio.run(_http(base_url, vision, images, args))
    direct = _direct(app, images, args)
    _report(http, direct, args)


def _combos(n: int) -> list[tuple[str, str]]:
    pairs = [(s, c) for s in SHAPES for c in COLORS]
    return [pairs[i % len(pairs)] for i in range(n)]


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPO / "configs" / "local.yaml"))
    parser.add_argument("--base-url", help="measure a running server instead of starting one")
    parser.add_argument("--images", type=int, default=64, help="distinct synthetic images per measurement")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight for the batched run")
    parser.add_argument("--detections", type=int, default=30, help="sequential detection requests")
    return parser.parse_args()


async def _http(base_url: str, vision: dict, images: list[bytes], args: argparse.Namespace) -> dict:
    clip, yolo = vision["clip"]["served_name"], vision["detector"]["served_name"]
    async with httpx.AsyncClient(base_url=base_url, timeout=300) as client:

        async def embed(image: bytes) -> int:
            reply = await client.post("/v1/embeddings", json={"model": clip, "input": [{"image": b64(image)}]})
            reply.raise_for_status()
            return reply.json()["batch_size"]

        async def detect(image: bytes) -> float:
            started = time.perf_counter()
            reply = await client.post(
                "/v1/detections", files={"image": ("i.png", image, "image/png")}, data={"model": yolo}
            )
            reply.raise_for_status()
            return time.perf_counter() - started

        for image in images[:4]:  # warm-up
            await embed(image)
            await detect(image)
        started = time.perf_counter()
        sequential = [await embed(image) for image in images]
        sequential_s = time.perf_counter() - started
        gate = asyncio.Semaphore(args.concurrency)

        async def gated(image: bytes) -> int:
            async with gate:
                return await embed(image)

        started = time.perf_counter()
        batched = await asyncio.gather(*(gated(image) for image in images))
        batched_s = time.perf_counter() - started
        latencies = [await detect(images[i % len(images)]) for i in range(args.detections)]
    return {
        "embed_unbatched_ips": len(images) / sequential_s,
        "embed_unbatched_mean_batch": statistics.mean(sequential),
        "embed_batched_ips": len(images) / batched_s,
        "embed_batched_mean_batch": statistics.mean(batched),
        "detect": latencies,
    }


def _direct(app: dict, images: list[bytes], args: argparse.Namespace) -> dict:
    import io

    import torch
    from PIL import Image

    from serve_app.common.model_store import verify
    from serve_app.common.runtime import configure_offline_runtime
    from serve_app.config import parse_app_config

    config = parse_app_config(app["args"])
    configure_offline_runtime(config.data_dir)
    import open_clip
    from ultralytics import YOLO

    # The replicas' torch thread count: Ray sets OMP_NUM_THREADS to int(num_cpus), at least 1.
    torch.set_num_threads(1)
    decoded = [Image.open(io.BytesIO(data)).convert("RGB") for data in images]

    clip_ref = verify(config.model_store, config.vision.clip.model, config.vision.clip.version)
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{clip_ref.path}")
    model.eval()

    def encode(batch: list) -> None:
        with torch.inference_mode():
            model.encode_image(torch.stack([preprocess(i) for i in batch]))

    encode(decoded[:4])
    started = time.perf_counter()
    for image in decoded:
        encode([image])
    one_s = time.perf_counter() - started
    size = args.concurrency
    started = time.perf_counter()
    for i in range(0, len(decoded), size):
        encode(decoded[i : i + size])
    batch_s = time.perf_counter() - started

    det = config.vision.detector
    yolo = YOLO(str(verify(config.model_store, det.model, det.version).path / "model.pt"), task="detect")
    for image in decoded[:4]:
        yolo.predict(image, imgsz=det.imgsz, rect=False, verbose=False)
    latencies = []
    for i in range(args.detections):
        # Same work as the replica per request: decode the PNG bytes, then predict.
        started = time.perf_counter()
        image = Image.open(io.BytesIO(images[i % len(images)])).convert("RGB")
        yolo.predict(image, imgsz=det.imgsz, rect=False, verbose=False)
        latencies.append(time.perf_counter() - started)
    return {"embed_one_ips": len(decoded) / one_s, "embed_batch_ips": len(decoded) / batch_s, "detect": latencies}


def _p(latencies: list[float], q: int) -> float:
    return 1000 * (statistics.median(latencies) if q == 50 else statistics.quantiles(latencies, n=10)[-1])


def _report(http: dict, direct: dict, args: argparse.Namespace) -> None:
    n, c = args.images, args.concurrency
    print(f"\nCLIP image embeddings, {n} distinct images")
    print(f"{'':44}{'images/s':>10}{'mean batch':>12}")
    rows = [
        ("HTTP, 1 in flight (unbatched)", http["embed_unbatched_ips"], http["embed_unbatched_mean_batch"]),
        (f"HTTP, {c} in flight (@serve.batch)", http["embed_batched_ips"], http["embed_batched_mean_batch"]),
    ]
    for name, ips, batch in rows:
        print(f"{name:44}{ips:10.1f}{batch:12.1f}")
    print(f"{'open_clip in-process, batch 1':44}{direct['embed_one_ips']:10.1f}{1:12.1f}")
    print(f"{f'open_clip in-process, batch {c}':44}{direct['embed_batch_ips']:10.1f}{c:12.1f}")
    print(
        f"batching speed-up: HTTP {http['embed_batched_ips'] / http['embed_unbatched_ips']:.2f}x, "
        f"in-process {direct['embed_batch_ips'] / direct['embed_one_ips']:.2f}x"
    )
    print(f"\nYOLO detection, {args.detections} requests one by one (PNG bytes in, boxes out)")
    print(f"{'':44}{'p50 ms':>10}{'p90 ms':>12}")
    for name, lat in (("HTTP (ingress + Detector)", http["detect"]), ("ultralytics in-process", direct["detect"])):
        print(f"{name:44}{_p(lat, 50):10.1f}{_p(lat, 90):12.1f}")
    print(f"ratio HTTP/direct p50: {_p(http['detect'], 50) / _p(direct['detect'], 50):.2f}x")


if __name__ == "__main__":
    main()
