"""Test media made at test time: speech from espeak-ng (or a tone VAD detects), muxed with PyAV.

pyannote's VAD finds no speech in a pure sine or noise; espeak-ng speech or a 220 Hz
tone amplitude-modulated at 3 Hz (a syllable rate) both pass it.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np

RATE = 16_000
SENTENCE = "The quick brown fox jumps over the lazy dog. Speech recognition turns audio into text."


def speech(seconds: float) -> np.ndarray:
    """About `seconds` of mono float32 at 16 kHz: espeak-ng sentences when installed, else a modulated tone."""
    voice = _espeak(SENTENCE) if shutil.which("espeak-ng") else None
    if voice is None:
        return modulated_tone(seconds)
    gap = np.zeros(int(0.4 * RATE), dtype=np.float32)
    unit = np.concatenate([voice, gap])
    repeats = int(np.ceil(seconds * RATE / len(unit)))
    return np.tile(unit, repeats)[: int(seconds * RATE)]


def modulated_tone(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE), dtype=np.float32) / RATE
    return (0.5 * np.sin(2 * np.pi * 220 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


def _espeak(text: str) -> np.ndarray | None:
    import av

    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "speech.wav"
        done = subprocess.run(["espeak-ng", "-w", str(wav), text], capture_output=True, check=False)
        if done.returncode != 0 or not wav.exists():
            return None
        with av.open(str(wav)) as container:
            resampler = av.AudioResampler(format="flt", layout="mono", rate=RATE)
            frames = [out.to_ndarray().reshape(-1) for f in container.decode(audio=0) for out in resampler.resample(f)]
    return np.concatenate(frames).astype(np.float32)


def encode(
    samples: np.ndarray, container: str, *, codec: str | None = None, video: bool = False, faststart: bool = False
) -> bytes:
    """Mux `samples` into `container` (wav, mp3, flac, ogg, mp4, webm, matroska, mov), optionally with video."""
    import av

    audio_codec = (
        codec
        or {
            "wav": "pcm_s16le",
            "mp3": "libmp3lame",
            "flac": "flac",
            "ogg": "libopus",
            "mp4": "aac",
            "ipod": "aac",
            "mov": "aac",
            "webm": "libopus",
            "matroska": "libopus",
        }[container]
    )
    rate = 48_000 if audio_codec in ("libopus",) else RATE
    buffer = io.BytesIO()
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(buffer, mode="w", format=container, options=options) as out:
        picture = _video_stream(out, container) if video else None
        stream = out.add_stream(audio_codec, rate=rate, layout="mono")
        if picture is not None:
            _write_video(out, picture, len(samples) / RATE)
        resampler = av.AudioResampler(format=stream.format.name, layout="mono", rate=rate)
        pcm = av.AudioFrame.from_ndarray(samples.reshape(1, -1).astype(np.float32), format="flt", layout="mono")
        pcm.sample_rate = RATE
        for frame in [*resampler.resample(pcm), *resampler.resample(None)]:
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buffer.getvalue()


def _video_stream(out, container: str):
    codec = "libvpx" if container == "webm" else "mpeg4"
    stream = out.add_stream(codec, rate=5)
    stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
    stream.time_base = Fraction(1, 5)
    return stream


def _write_video(out, stream, seconds: float) -> None:
    import av

    for i in range(max(1, int(seconds * 5))):
        image = np.full((48, 64, 3), (i * 7) % 255, dtype=np.uint8)
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = i
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode(None):
        out.mux(packet)


def video_without_audio(seconds: float = 1.0) -> bytes:
    import av

    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as out:
        _write_video(out, _video_stream(out, "mp4"), seconds)
    return buffer.getvalue()
