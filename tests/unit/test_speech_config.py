"""The speech and video_summary config sections, and how a transcript renders per response_format."""

from __future__ import annotations

import json

import pytest
import yaml

from serve_app.config import ConfigError, parse_app_config
from serve_app.http.routes.speech import render_transcription
from serve_app.protocol import Transcript, TranscriptionSegment, TranscriptionWord
from tests.serve_harness import REPO

LLM = {"served_name": "m", "model": "m", "version": "v1"}
SPEECH = {"served_name": "w", "model": "w", "version": "v1"}


def test_speech_defaults_and_typos():
    config = parse_app_config({"llm": LLM, "speech": SPEECH, "video_summary": {}})
    assert config.speech.batch_size == 8 and config.speech.compute_type is None
    assert config.speech.diarization is None and config.speech.subtitles.max_line_chars == 42
    with pytest.raises(ConfigError, match="speech.batchsize"):
        parse_app_config({"llm": LLM, "speech": {**SPEECH, "batchsize": 4}})


def test_pipeline_needs_speech():
    with pytest.raises(ConfigError, match="video_summary needs"):
        parse_app_config({"llm": LLM, "video_summary": {}})


@pytest.mark.parametrize("name", ["local.yaml", "prod.yaml"])
def test_shipped_configs_deploy_speech(name):
    app = yaml.safe_load((REPO / "configs" / name).read_text())["applications"][0]
    config = parse_app_config(app["args"])
    assert config.speech is not None and config.video_summary is not None
    assert "whisper-1" in config.speech.aliases
    names = {d["name"] for d in app["deployments"]}
    assert {"ASR", "Diarizer", "VideoSummary"} <= names and config.speech.diarization is not None


def test_local_speech_fits_half_a_cpu():
    app = yaml.safe_load((REPO / "configs" / "local.yaml").read_text())["applications"][0]
    speech = ("ASR", "Diarizer", "VideoSummary")
    cpus = sum(d["ray_actor_options"]["num_cpus"] for d in app["deployments"] if d["name"] in speech)
    assert cpus <= 0.5


TRANSCRIPT = Transcript(
    model="w",
    language="en",
    duration=2.0,
    text="hello world",
    segments=[
        TranscriptionSegment(
            id=0,
            start=0.1,
            end=1.5,
            text=" hello world",
            words=[
                TranscriptionWord(word="hello", start=0.1, end=0.6),
                TranscriptionWord(word="world", start=0.7, end=1.5),
            ],
        )
    ],
    aligned=True,
    subtitles="1\n00:00:00,100 --> 00:00:01,500\nhello world\n",
)


def test_render_formats():
    assert json.loads(render_transcription(TRANSCRIPT, "json", []).body) == {"text": "hello world"}
    assert render_transcription(TRANSCRIPT, "text", []).body == b"hello world\n"
    assert render_transcription(TRANSCRIPT, "srt", []).body.startswith(b"1\n00:00:00,100")
    verbose = json.loads(render_transcription(TRANSCRIPT, "verbose_json", []).body)
    assert verbose["task"] == "transcribe" and "words" not in verbose and "words" not in verbose["segments"][0]
    words = json.loads(render_transcription(TRANSCRIPT, "verbose_json", ["word"]).body)
    assert [w["word"] for w in words["words"]] == ["hello", "world"] and "segments" not in words
