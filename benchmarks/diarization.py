"""What speakers cost: the Diarizer's real-time factor on CPU, and transcription with diarization against without.

    python benchmarks/diarization.py [--seconds 120] [--rounds 5]

One Ray runs a slim local.yaml (Ingress, ASR, Diarizer). The input is real two-speaker speech:
pyannote's bundled sample, repeated to `--seconds`, as a wav. Each round sends the same file to
/v1/audio/transcriptions as verbose_json without and with `diarize` (the order flips every round,
so drift on a shared machine falls on both alike), then to the Diarizer's handle alone. The ASR and
the Diarizer run side by side, so with diarization a request should take about the longer of the
two, not their sum: the target is at most 1.5x the time without. Medians are reported with the
spread (min-max) over the rounds, after a warm-up round that is not counted.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from serve_app.common.media import decode_audio  # noqa: E402
from serve_app.tools.launch import free_port, set_ray_environment  # noqa: E402
from tests import serve_harness, speech_media  # noqa: E402

KEEP = {"Ingress", "ASR", "Diarizer"}
APP = "bench"


def main() -> None:
    args = _args()
    wav = _input(args.seconds)
    print(f"input: pyannote's two-speaker sample repeated to {args.seconds:.0f} s, {len(wav) / 1e6:.1f} MB wav")
    set_ray_environment()
    import ray
    from ray import serve

    ray.init(address="local", include_dashboard=False, namespace="serve")
    try:
        port = free_port()
        serve_harness.start_serve(port)
        app = serve_harness.application("local.yaml", name=APP, route_prefix="/", edit=_slim)
        serve_harness.deploy_apps([app], timeout_s=900)
        model = app["args"]["speech"]["served_name"]
        diarizer = serve.get_deployment_handle("Diarizer", app_name=APP)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=1800) as http:
            rows = _rounds(http, diarizer, model, wav, args.rounds)
    finally:
        serve.shutdown()
        ray.shutdown()
    _report(rows, args.seconds, args.rounds)


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=120.0, help="audio length")
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds (after one warm-up round)")
    return parser.parse_args()


def _input(seconds: float) -> bytes:
    sample = Path(importlib.util.find_spec("pyannote.audio").submodule_search_locations[0]) / "sample" / "sample.wav"
    audio = decode_audio(sample.read_bytes(), max_bytes=1 << 26, max_seconds=600).samples
    repeats = int(np.ceil(seconds * 16_000 / len(audio)))
    return speech_media.encode(np.tile(audio, repeats)[: int(seconds * 16_000)], "wav")


def _slim(app: dict) -> None:
    serve_harness.one_llm(app)
    args = app["args"]
    for section in ("video_summary", "vision"):
        args.pop(section, None)
    app["deployments"] = [d for d in app["deployments"] if d["name"] in KEEP]


def _rounds(http: httpx.Client, diarizer, model: str, wav: bytes, rounds: int) -> dict[str, list[float]]:
    import asyncio

    def transcribe(diarize: bool) -> float:
        started = time.perf_counter()
        data = {"model": model, "language": "en", "response_format": "verbose_json"}
        if diarize:
            data["diarize"] = "true"
        http.post("/v1/audio/transcriptions", data=data, files={"file": ("a.wav", wav)}).raise_for_status()
        return time.perf_counter() - started

    async def diarize_alone() -> float:
        return (await diarizer.diarize.remote(wav, {})).seconds

    rows: dict[str, list[float]] = {"without": [], "with": [], "diarizer": []}
    for i in range(rounds + 1):  # round 0 warms up every path (lazy initialisation, caches)
        order = (False, True) if i % 2 == 0 else (True, False)
        times = {diarize: transcribe(diarize) for diarize in order}
        alone = asyncio.run(diarize_alone())
        if i > 0:
            rows["without"].append(times[False])
            rows["with"].append(times[True])
            rows["diarizer"].append(alone)
    return rows


def _report(rows: dict[str, list[float]], seconds: float, rounds: int) -> None:
    def spread(values: list[float]) -> str:
        return f"{statistics.median(values):7.2f} s  ({min(values):.2f}-{max(values):.2f})"

    print(f"\n{rounds} rounds on {seconds:.0f} s of audio; median (min-max)")
    print(f"transcription without diarization  {spread(rows['without'])}")
    print(f"transcription with diarization     {spread(rows['with'])}")
    print(f"diarization alone (Diarizer)       {spread(rows['diarizer'])}")
    ratios = [w / wo for w, wo in zip(rows["with"], rows["without"], strict=True)]
    rtf = [d / seconds for d in rows["diarizer"]]
    print(
        f"with / without: median {statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}); target <= 1.5x"
    )
    print(f"diarization real-time factor: median {statistics.median(rtf):.3f} ({min(rtf):.3f}-{max(rtf):.3f})")


if __name__ == "__main__":
    main()
