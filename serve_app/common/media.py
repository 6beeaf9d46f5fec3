"""Audio track of any container (wav, mp3, flac, ogg, m4a, mp4, webm, mkv, mov) -> 16 kHz mono float32.

PyAV ships its own FFmpeg libraries, so no `ffmpeg` binary is needed (whisperx.load_audio
would shell out to one). Every way a file can be bad becomes an InvalidRequest saying
what was wrong; decoding stops as soon as the configured limits are passed, so a small
compressed file cannot expand into unbounded memory.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from serve_app.errors import InvalidRequest, PayloadTooLarge

SAMPLE_RATE = 16_000

# Containers FFmpeg may identify the accepted files as (its demuxer names).
ACCEPTED_CONTAINERS = {
    "wav",
    "mp3",
    "flac",
    "ogg",
    "mov,mp4,m4a,3gp,3g2,mj2",
    "matroska,webm",
    "aac",
    "opus",
}


@dataclass(frozen=True)
class DecodedAudio:
    samples: np.ndarray  # float32, mono, SAMPLE_RATE
    container: str

    @property
    def duration(self) -> float:
        return len(self.samples) / SAMPLE_RATE


def media_size(media: bytes | str | os.PathLike) -> int:
    if isinstance(media, bytes | bytearray | memoryview):
        return len(media)
    path = Path(media)
    if not path.is_file():
        raise InvalidRequest(f"No media file at '{path}'.", param="file")
    return path.stat().st_size


def decode_audio(
    media: bytes | str | os.PathLike, *, max_bytes: int, max_seconds: float, param: str = "file"
) -> DecodedAudio:
    """Decode the first audio track of `media` (raw bytes or a path)."""
    import av

    size = media_size(media)
    if size == 0:
        raise InvalidRequest("The uploaded file is empty.", param=param)
    if size > max_bytes:
        raise PayloadTooLarge(f"Media is {size} bytes; the limit is {max_bytes} bytes.", param=param)
    source = io.BytesIO(media) if isinstance(media, bytes | bytearray | memoryview) else str(media)
    try:
        container = av.open(source, mode="r", metadata_errors="ignore")
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise InvalidRequest(f"The file is not a readable audio or video file ({_reason(exc)}).", param=param) from None
    with container:
        name = container.format.name
        if name not in ACCEPTED_CONTAINERS:
            raise InvalidRequest(
                f"Unsupported media format '{name}'; send wav, mp3, flac, ogg, m4a, mp4, webm, mkv or mov.",
                param=param,
            )
        if not container.streams.audio:
            raise InvalidRequest("The file has no audio track.", param=param)
        samples = _decode_stream(container, max_seconds, param)
    if samples.size == 0:
        raise InvalidRequest("The audio track holds no decodable audio (truncated or corrupt file).", param=param)
    return DecodedAudio(samples=samples, container=name)


def _decode_stream(container, max_seconds: float, param: str) -> np.ndarray:
    import av

    stream = container.streams.audio[0]
    resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
    limit = int(max_seconds * SAMPLE_RATE)
    pieces: list[np.ndarray] = []
    total = 0
    try:
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                total = _append(pieces, out, total, limit, max_seconds, param)
        for out in resampler.resample(None):  # flush the resampler's buffered tail
            total = _append(pieces, out, total, limit, max_seconds, param)
    except av.FFmpegError as exc:
        # A truncated file usually still yields the audio before the cut; keep it only if there is some.
        if total == 0:
            raise InvalidRequest(f"The audio track could not be decoded ({_reason(exc)}).", param=param) from None
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)


def _append(pieces: list[np.ndarray], frame, total: int, limit: int, max_seconds: float, param: str) -> int:
    samples = frame.to_ndarray().reshape(-1).astype(np.float32, copy=False)
    total += samples.size
    if total > limit:
        raise PayloadTooLarge(f"The audio is longer than the limit of {max_seconds:g} seconds.", param=param)
    pieces.append(samples)
    return total


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return text.split(": '")[0][:200]
