"""PyAV decoding: every container to 16 kHz mono float32; each kind of bad file is a clear 400 or 413."""

from __future__ import annotations

import numpy as np
import pytest

from serve_app.common.media import SAMPLE_RATE, decode_audio
from serve_app.errors import InvalidRequest, PayloadTooLarge
from tests import speech_media

LIMITS = {"max_bytes": 50 << 20, "max_seconds": 60.0}


@pytest.fixture(scope="module")
def tone():
    return speech_media.modulated_tone(2.0)


@pytest.mark.parametrize(
    "container,video",
    [
        ("wav", False),
        ("mp3", False),
        ("flac", False),
        ("ogg", False),
        ("ipod", False),
        ("mp4", True),
        ("webm", True),
        ("matroska", True),
        ("mov", False),
    ],
)
def test_containers_decode_to_16k_mono_float32(tone, container, video):
    decoded = decode_audio(speech_media.encode(tone, container, video=video), **LIMITS)
    assert decoded.samples.dtype == np.float32 and decoded.samples.ndim == 1
    assert decoded.duration == pytest.approx(2.0, abs=0.15)  # AAC adds priming samples
    assert np.abs(decoded.samples).max() > 0.1


def test_decodes_from_a_path(tone, tmp_path):
    path = tmp_path / "a.flac"
    path.write_bytes(speech_media.encode(tone, "flac"))
    assert decode_audio(path, **LIMITS).duration == pytest.approx(2.0, abs=0.05)
    with pytest.raises(InvalidRequest, match="No media file"):
        decode_audio(tmp_path / "missing.wav", **LIMITS)


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda mp4: b"", "empty"),
        (lambda mp4: mp4[: len(mp4) // 3], "not a readable"),
        (lambda mp4: b"just some text\n" * 40, "not a readable"),
        (lambda mp4: speech_media.video_without_audio(), "no audio track"),
    ],
)
def test_bad_files_are_invalid_requests(tone, make, message):
    mp4 = speech_media.encode(tone, "mp4", video=True)
    with pytest.raises(InvalidRequest, match=message) as info:
        decode_audio(make(mp4), **LIMITS)
    assert info.value.param == "file" and info.value.status == 400


def test_limits_are_413_before_everything_is_decoded(tone):
    wav = speech_media.encode(tone, "wav")
    with pytest.raises(PayloadTooLarge):
        decode_audio(wav, max_bytes=len(wav) - 1, max_seconds=60)
    with pytest.raises(PayloadTooLarge, match="longer than"):
        decode_audio(wav, max_bytes=len(wav), max_seconds=1.0)
    assert SAMPLE_RATE == 16_000
