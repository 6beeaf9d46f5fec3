"""The Diarizer's parts without Ray: the tiny pipeline built and loaded through pyannote's own loader,
the Diarizer class on pyannote's two-speaker sample (DER against its reference annotation), known
speakers, reference clips refused with 400s, and speakers in SRT / WebVTT."""

from __future__ import annotations

import asyncio
import base64
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from serve_app.common.subtitles import build_cues, render_srt, render_vtt
from serve_app.config import DiarizationConfig
from serve_app.errors import InvalidRequest
from serve_app.protocol import TranscriptionSegment
from serve_app.tools.tiny_models import build_all, tiny_version
from tests import speech_media

SAMPLE = Path(importlib.util.find_spec("pyannote.audio").submodule_search_locations[0]) / "sample"
NAME = "tiny-diarization"
DER_BOUND = 0.35  # measured 0.24 with num_speakers=2 (see tests/e2e/test_diarization.py)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("diarization-store")
    build_all(root, names=[NAME])
    return root


@pytest.fixture(scope="module")
def diarizer(store: Path, tmp_path_factory: pytest.TempPathFactory):
    from deployments.diarizer import Diarizer

    config = DiarizationConfig(model=NAME, version=tiny_version(NAME), cpu_threads=2, max_reference_seconds=10)
    return Diarizer.func_or_class(config, store, tmp_path_factory.mktemp("data"), 1 << 26, 600.0)


@pytest.fixture(scope="module")
def sample() -> tuple[bytes, np.ndarray]:
    from serve_app.common.media import decode_audio

    wav = (SAMPLE / "sample.wav").read_bytes()
    return wav, decode_audio(wav, max_bytes=1 << 26, max_seconds=60).samples


def clip(samples: np.ndarray, start: float, end: float) -> str:
    wav = speech_media.encode(samples[int(start * 16_000) : int(end * 16_000)], "wav")
    return "data:audio/wav;base64," + base64.b64encode(wav).decode()


def score(result):
    from pyannote.core import Annotation, Segment
    from pyannote.database.util import load_rttm
    from pyannote.metrics.diarization import DiarizationErrorRate

    reference = load_rttm(SAMPLE / "sample.rttm")["sample"]
    hypothesis = Annotation(uri="sample")
    for turn in result.turns:
        hypothesis[Segment(turn.start, turn.end)] = turn.speaker
    metric = DiarizationErrorRate()
    return metric(reference, hypothesis), metric.optimal_mapping(reference, hypothesis)


def test_the_pipeline_loads_through_pyannotes_loader(store: Path) -> None:
    from pyannote.audio import Pipeline

    pipeline = Pipeline.from_pretrained(str(store / NAME / tiny_version(NAME)))
    assert type(pipeline).__name__ == "SpeakerDiarization" and pipeline.klustering == "VBxClustering"
    # The x-vector's embedding is the MFCC statistics: two different voices differ, one voice is stable.
    import torch

    tone = torch.from_numpy(speech_media.modulated_tone(3.0))[None, None]
    embed = pipeline._embedding
    assert np.allclose(embed(tone), embed(tone.clone()))
    assert not np.allclose(embed(tone), embed(torch.flip(tone, dims=[-1]) * 0.5 + 0.01 * torch.randn_like(tone)))


def test_two_speakers_on_the_sample(diarizer, sample) -> None:
    wav, _ = sample
    result = asyncio.run(diarizer.diarize(wav, {"num_speakers": 2}))
    assert result.speakers == ["SPEAKER_00", "SPEAKER_01"]
    der, _ = score(result)
    assert der < DER_BOUND


def test_a_reference_names_its_speaker(diarizer, sample) -> None:
    wav, samples = sample
    options = {"num_speakers": 2, "known_speaker_names": ["bob"], "known_speaker_references": [clip(samples, 22, 27.5)]}
    result = asyncio.run(diarizer.diarize(wav, options))
    _, mapping = score(result)
    assert mapping["bob"] == "speaker91"  # 22.0-27.5 s is speaker91 alone in sample.rttm


@pytest.mark.parametrize(
    ("reference", "reason"),
    [
        ("data:audio/wav;base64,bm90IGF1ZGlv", "not a readable audio"),
        ("audio.wav", "not a base64 data URL"),
        ("data:audio/wav;base64,@@@", "not valid base64"),
    ],
)
def test_bad_references_are_400(diarizer, sample, reference, reason) -> None:
    options = {"known_speaker_names": ["a"], "known_speaker_references": [reference]}
    with pytest.raises(InvalidRequest, match=reason) as caught:
        asyncio.run(diarizer.diarize(sample[0], options))
    assert caught.value.param == "known_speaker_references"


def test_long_reference_and_speaker_cap_are_400(diarizer, sample) -> None:
    wav, samples = sample
    with pytest.raises(InvalidRequest, match="longer than the 10 s accepted") as caught:
        asyncio.run(
            diarizer.diarize(wav, {"known_speaker_names": ["a"], "known_speaker_references": [clip(samples, 0, 12)]})
        )
    assert caught.value.param == "known_speaker_references"
    with pytest.raises(InvalidRequest, match="cap of 20") as caught:
        asyncio.run(diarizer.diarize(wav, {"max_speakers": 21}))
    assert caught.value.param == "max_speakers"


def test_match_known_speakers_is_one_to_one() -> None:
    from deployments.diarizer import match_known_speakers

    centroids = np.array([[1.0, 0.0, 5.0], [0.0, 1.0, 5.0], [0.5, 0.5, 6.0]])
    references = np.array([[0.1, 0.9, 5.0], [0.9, 0.1, 5.0]])
    matches = match_known_speakers(["b", "a"], references, ["S0", "S1", "S2"], centroids, threshold=0.3)
    assert [(m.name, m.label) for m in matches] == [("b", "S1"), ("a", "S0")]
    far = match_known_speakers(["x"], -centroids[:1], ["S0", "S1"], centroids[:2], threshold=0.3)
    assert far[0].label is None


def test_subtitles_carry_speakers_and_stay_valid() -> None:
    segments = [
        TranscriptionSegment(id=0, start=0.0, end=1.0, text="hello there", speaker="SPEAKER_00"),
        TranscriptionSegment(id=1, start=1.0, end=2.0, text="a <b> & c", speaker="Ann <the\nhost>"),
        TranscriptionSegment(id=2, start=2.0, end=3.0, text="no speaker"),
    ]
    cues = build_cues(segments, 3.0)
    assert render_srt(cues).split("\n\n")[:2] == [
        "1\n00:00:00,000 --> 00:00:01,000\nSPEAKER_00: hello there",
        "2\n00:00:01,000 --> 00:00:02,000\nAnn <the host>: a <b> & c",
    ]
    vtt = render_vtt(cues)
    assert "\n<v SPEAKER_00>hello there\n" in vtt
    assert "\n<v Ann &lt;the host&gt;>a &lt;b> &amp; c\n" in vtt
    assert vtt.endswith("00:00:02.000 --> 00:00:03.000\nno speaker\n")


def test_the_asr_assigns_turns_to_segments_and_words_with_whisperx() -> None:
    from types import MethodType, SimpleNamespace

    from deployments.asr import ASR
    from serve_app.config import SpeechConfig
    from serve_app.protocol import Diarization, SpeakerTurn, Transcript, TranscriptionWord

    words = [TranscriptionWord(word="hi", start=0.1, end=0.4), TranscriptionWord(word="yo", start=1.2, end=1.5)]
    transcript = Transcript(
        model="w",
        language="en",
        duration=3.0,
        text="hi yo later",
        segments=[
            TranscriptionSegment(id=0, start=0.0, end=1.6, text="hi yo", words=words),
            TranscriptionSegment(id=1, start=2.5, end=2.9, text="later"),  # unaligned, in no turn: the nearest
        ],
        aligned=True,
    )
    turns = [SpeakerTurn(start=0.0, end=0.9, speaker="A"), SpeakerTurn(start=1.0, end=2.0, speaker="B")]
    diarization = Diarization(model="d", duration=3.0, speakers=["A", "B"], turns=turns, seconds=0.7)
    asr = SimpleNamespace(_config=SpeechConfig(served_name="w", model="w", version="v1"))
    asr._subtitles = MethodType(ASR.func_or_class._subtitles, asr)
    result = asyncio.run(ASR.func_or_class.attribute_speakers(asr, transcript, diarization, "vtt"))
    assert [s.speaker for s in result.segments] == ["A", "B"]  # the most overlap (0.9 s of A); the nearest turn
    assert [w.speaker for w in result.segments[0].words] == ["A", "B"] and result.segments[1].words is None
    assert result.diarized and result.speakers == ["A", "B"] and result.timings.diarize == 0.7
    assert "<v A>hi yo" in result.subtitles and "<v B>later" in result.subtitles
