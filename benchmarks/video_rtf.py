"""Real-time factor of the video pipeline over HTTP vs WhisperX called directly, same file, one run.

    python benchmarks/video_rtf.py                      # starts configs/local.yaml itself
    python benchmarks/video_rtf.py --base-url http://127.0.0.1:8000 --seconds 120

RTF here = seconds of audio per wall second (higher is faster). The HTTP side is the
whole pipeline (upload, PyAV decode, VAD + Whisper + alignment in the ASR replica, SRT,
LLM summary); the direct side is PyAV decode + whisperx.load_model(...).transcribe +
whisperx.align in this process with the ASR replica's settings (model, compute type,
batch size, beam size, threads, token cap). The pipeline's own ASR-stage timings are
printed too, so the serving overhead and the summary's cost can be told apart.
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
sys.path.insert(0, str(REPO))  # tests.speech_media makes the input video

from benchmarks.serving import serving  # noqa: E402
from tests import speech_media  # noqa: E402


def main() -> None:
    args = _args()
    config = yaml.safe_load(Path(args.config).read_text())
    app = config["applications"][0]
    video = speech_media.encode(speech_media.speech(args.seconds), "mp4", video=True)
    print(f"input: {args.seconds:.0f} s of speech muxed into a {len(video) / 1e6:.1f} MB mp4 (with a video track)")
    with serving(args.config, args.base_url) as base_url:
        http = asyncio.run(_measure_http(base_url, video, args))
    direct = _measure_direct(app, video, args)
    _report(http, direct, args)


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPO / "configs" / "local.yaml"))
    parser.add_argument("--base-url", help="measure a running server instead of starting one")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the test video")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--language", default="en")
    return parser.parse_args()


async def _measure_http(base_url: str, video: bytes, args: argparse.Namespace) -> dict:
    async with httpx.AsyncClient(base_url=base_url, timeout=600) as client:

        async def one() -> dict:
            reply = await client.post(
                "/v1/pipelines/video-summary",
                data={"language": args.language},
                files={"file": ("talk.mp4", video, "video/mp4")},
            )
            reply.raise_for_status()
            return reply.json()

        await one()  # warm-up: first calls pay for lazy initialisation
        walls, stages = [], []
        for _ in range(args.runs):
            started = time.perf_counter()
            body = await one()
            walls.append(time.perf_counter() - started)
            stages.append(body["timings"])
    asr = [t["decode"] + t["transcribe"] + t["align"] for t in stages]
    return {
        "wall": statistics.median(walls),
        "asr": statistics.median(asr),
        "summarise": statistics.median(t["summarise"] for t in stages),
        "duration": body["duration"],
    }


def _measure_direct(app: dict, video: bytes, args: argparse.Namespace) -> dict:
    from serve_app.common.runtime import configure_offline_runtime
    from serve_app.config import parse_app_config

    config = parse_app_config(app["args"])
    configure_offline_runtime(config.data_dir)
    import torch
    import whisperx

    from deployments.asr import write_minimal_punkt
    from serve_app.common.media import decode_audio
    from serve_app.common.model_store import verify

    speech = config.speech
    torch.set_num_threads(speech.cpu_threads)
    write_minimal_punkt(config.data_dir / "cache" / "nltk")
    model = whisperx.load_model(
        str(verify(config.model_store, speech.model, speech.version).path),
        device="cpu",
        compute_type=speech.compute_type or "int8",
        asr_options={"beam_size": speech.beam_size},
        vad_method="pyannote",
        threads=speech.cpu_threads,
        language=args.language,
    )
    if speech.max_new_tokens:  # the same decode cap the ASR replica applies
        model.model.max_length = min(model.model.max_length, 4 + speech.max_new_tokens)
    aligner = speech.aligners[args.language]
    align_model, metadata = whisperx.load_align_model(
        args.language, "cpu", model_name=str(verify(config.model_store, aligner.model, aligner.version).path)
    )

    def one() -> float:
        audio = decode_audio(video, max_bytes=speech.max_media_bytes, max_seconds=speech.max_audio_seconds).samples
        result = model.transcribe(audio, batch_size=speech.batch_size, language=args.language)
        whisperx.align(result["segments"], align_model, metadata, audio, "cpu")
        return len(audio) / 16_000

    one()
    walls = []
    for _ in range(args.runs):
        started = time.perf_counter()
        duration = one()
        walls.append(time.perf_counter() - started)
    return {"wall": statistics.median(walls), "duration": duration}


def _report(http: dict, direct: dict, args: argparse.Namespace) -> None:
    seconds = http["duration"]
    print(f"\nreal-time factor (audio s / wall s, higher is faster), median of {args.runs} runs, {seconds:.0f} s input")
    print(f"{'':44}{'wall s':>9}{'RTF':>9}")
    rows = (
        ("pipeline via HTTP (ASR + SRT + LLM summary)", http["wall"], seconds / http["wall"]),
        ("  of which ASR stages in the replica", http["asr"], seconds / http["asr"]),
        ("  of which LLM summary", http["summarise"], None),
        ("whisperx in-process (decode+ASR+align)", direct["wall"], direct["duration"] / direct["wall"]),
    )
    for name, wall, rtf in rows:
        print(f"{name:44}{wall:9.2f}" + (f"{rtf:9.1f}" if rtf is not None else f"{'-':>9}"))
    print(
        f"ratio RTF direct/pipeline: {(direct['duration'] / direct['wall']) / (seconds / http['wall']):.2f}x; "
        f"direct/ASR stages in the replica: {(direct['duration'] / direct['wall']) / (seconds / http['asr']):.2f}x"
    )


if __name__ == "__main__":
    main()
