"""`python -m serve_app bulk` against the same media sent one by one over HTTP, and online TTFT under it.

1. Videos: V short generated videos (S seconds of speech each) through `bulk transcribe --format srt`
   (uploads included), vs the same files posted one at a time to /v1/audio/transcriptions. Target:
   bulk >= 1.5x faster.
2. Images: I generated images through `bulk index` into a CLIP collection, vs the same images added
   one at a time (`POST /v1/collections/{name}/items`, base64). Target: bulk >= 3x faster. With
   `--detect` both store each image's detections too, and the detector's compute bounds both sides.
3. Online chat TTFT p50 (streamed) while a video batch runs, vs idle. Target: <= 1.25x.

Each pair is measured alternately, `--repeats` times, and every ratio is printed with its spread.

    python benchmarks/bulk_media.py                       # starts configs/local.yaml itself
    python benchmarks/bulk_media.py --base-url http://127.0.0.1:8000 --videos 20 --images 500 --repeats 2
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.batch_throughput import _alternate, _report, _ttft  # noqa: E402
from benchmarks.serving import serving  # noqa: E402

ASR, CLIP = "whisper-1", "tiny-clip"


def main() -> None:
    args = _args()
    with serving(args.config, args.base_url) as base_url, tempfile.TemporaryDirectory() as scratch:
        asyncio.run(_run(base_url, Path(scratch), args))


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPO / "configs" / "local.yaml"))
    parser.add_argument("--base-url", help="measure a running server instead of starting one")
    parser.add_argument("--videos", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=3.0, help="speech per video")
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--background-videos", type=int, default=200, help="the video batch under online TTFT")
    parser.add_argument("--online", type=int, default=30, help="online streamed chats per TTFT measurement")
    parser.add_argument("--detect", action="store_true", help="index the images with their detections")
    parser.add_argument("--repeats", type=int, default=2)
    return parser.parse_args()


def make_media(root: Path, videos: int, seconds: float, images: int, background: int) -> tuple[Path, Path, Path]:
    from tests.images import png
    from tests.speech_media import encode, speech

    video_dir, image_dir, background_dir = root / "videos", root / "images", root / "background"
    for folder in (video_dir, image_dir, background_dir):
        folder.mkdir()
    clip = encode(speech(seconds), "mp4", video=True)
    for i in range(videos):
        (video_dir / f"v{i:03d}.mp4").write_bytes(clip)
    for i in range(background):
        (background_dir / f"b{i:04d}.mp4").write_bytes(clip)
    shapes, colors = ("square", "circle", "triangle"), ("red", "green", "blue")
    for i in range(images):
        (image_dir / f"i{i:04d}.png").write_bytes(
            png(shapes[i % 3], colors[i % 3 - (i // 3) % 3], (160, 120), text=str(i))
        )
    return video_dir, image_dir, background_dir


def bulk(base_url: str, *args: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "serve_app", "bulk", *args, "--base-url", base_url, "--now"]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=REPO)


async def _bulk_s(base_url: str, *args: str) -> float:
    started = time.perf_counter()
    process = bulk(base_url, *args)
    out, _ = await asyncio.to_thread(process.communicate)
    if process.returncode != 0:
        raise SystemExit(f"bulk {args[0]} failed: {out}")
    return time.perf_counter() - started


async def _transcribe_one_by_one(client: httpx.AsyncClient, folder: Path) -> float:
    started = time.perf_counter()
    for path in sorted(folder.glob("*.mp4")):
        files = {"file": (path.name, path.read_bytes())}
        reply = await client.post(
            "/v1/audio/transcriptions", data={"model": ASR, "response_format": "srt"}, files=files
        )
        reply.raise_for_status()
    return time.perf_counter() - started


async def _index_one_by_one(client: httpx.AsyncClient, folder: Path, collection: str, detect: bool) -> float:
    started = time.perf_counter()
    for path in sorted(folder.glob("*.png")):
        image = base64.b64encode(path.read_bytes()).decode()
        item = {"image": image, "detect": detect, "metadata": {"path": path.name}}
        reply = await client.post(f"/v1/collections/{collection}/items", json={"items": [item]})
        reply.raise_for_status()
    return time.perf_counter() - started


async def _ttft_under_videos(client: httpx.AsyncClient, base_url: str, folder: Path, online: int) -> float:
    out = Path(tempfile.mkdtemp())
    process = bulk(base_url, "transcribe", str(folder), "--format", "srt", "--out", str(out))
    try:
        # Until the video batch runs at full speed: its first block is done, so its task's worker has
        # started (seconds of imports after a cancel killed the last one) and the ASR is busy.
        while True:
            batches = (await client.get("/v1/batches", params={"limit": 1})).json()["data"]
            if batches and batches[0]["status"] == "in_progress" and batches[0]["request_counts"]["completed"]:
                break
            if process.poll() is not None:
                raise SystemExit("the background video batch ended before the TTFT measurement began")
            await asyncio.sleep(0.2)
        return await _ttft(client, online)
    finally:
        process.send_signal(signal.SIGINT)  # Ctrl-C: the CLI cancels its batch
        await asyncio.to_thread(process.wait)


async def _run(base_url: str, scratch: Path, args: argparse.Namespace) -> None:
    video_dir, image_dir, background_dir = make_media(
        scratch, args.videos, args.seconds, args.images, args.background_videos
    )
    async with httpx.AsyncClient(base_url=base_url, timeout=600) as client:
        videos, images, ttft = [], [], []
        detect = ["--detect"] if args.detect else []
        for repeat in range(args.repeats):
            out = scratch / f"srt{repeat}"
            pair = [
                lambda out=out: _bulk_s(base_url, "transcribe", str(video_dir), "--format", "srt", "--out", str(out)),
                lambda: _transcribe_one_by_one(client, video_dir),
            ]
            bulk_s, http_s = await _alternate(pair, repeat)
            videos.append((bulk_s, http_s))
            print(f"{args.videos} videos of {args.seconds:.0f}s: bulk {bulk_s:.1f}s, HTTP one by one {http_s:.1f}s")
            names = [f"bench{uuid.uuid4().hex[:8]}" for _ in range(2)]
            for name in names:
                await client.post("/v1/collections", json={"name": name, "model": CLIP})
            index_out = scratch / f"index{repeat}"
            pair = [
                lambda names=names, index_out=index_out: _bulk_s(
                    base_url, "index", str(image_dir), "--collection", names[0], "--out", str(index_out), *detect
                ),
                lambda names=names: _index_one_by_one(client, image_dir, names[1], args.detect),
            ]
            bulk_s, http_s = await _alternate(pair, repeat)
            images.append((bulk_s, http_s))
            what = f"{args.images} images" + " with detections" * args.detect
            print(f"{what}: bulk {bulk_s:.1f}s, HTTP one by one {http_s:.1f}s")
            for name in names:
                await client.delete(f"/v1/collections/{name}")
        # Last: cancelling the background batch stops its Ray Data task mid-block, and the next batch
        # would pay a fresh worker's start (seconds) that the comparisons above should not carry.
        for _ in range(args.repeats):
            idle = await _ttft(client, args.online)
            busy = await _ttft_under_videos(client, base_url, background_dir, args.online)
            ttft.append((busy, idle))
            print(f"online TTFT p50: idle {idle * 1000:.0f} ms, under a video batch {busy * 1000:.0f} ms")
    _report("videos: HTTP / bulk wall time (target >= 1.5)", [h / b for b, h in videos])
    _report("images: HTTP / bulk wall time (target >= 3)", [h / b for b, h in images])
    _report("online TTFT p50: under a video batch / idle (target <= 1.25)", [b / i for b, i in ttft])


if __name__ == "__main__":
    main()
