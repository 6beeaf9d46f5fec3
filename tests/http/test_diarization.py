"""Speakers over HTTP, against fake ASR and Diarizer handles: OpenAI's diarized_json through the SDK,
verbose_json / SRT / VTT with `diarize`, the speaker fields as the Diarizer receives them, and every
bad input a 400 naming its param. The real models' side is tests/e2e/test_diarization.py."""

from __future__ import annotations

import base64

import openai
import pytest

from tests.fakes import FakeDiarizer, FakeHandle
from tests.http.support import ASR, assert_envelope

WAV = b"RIFF" + b"\0" * 60
CLIP = "data:audio/wav;base64,AA=="


@pytest.fixture()
def diarizer() -> FakeDiarizer:
    return FakeDiarizer()


@pytest.fixture()
def speakers_client(serve_ingress, backends, diarizer):
    models = {**backends["models"], "diarizer": {diarizer.name: FakeHandle(diarizer, name="Diarizer")}}
    return serve_ingress(models, backends["services"])


def post(client, **fields):
    return client.post("/v1/audio/transcriptions", data={"model": ASR, **fields}, files={"file": ("a.wav", WAV)})


def test_diarized_json_through_the_sdk(speakers_client, diarizer, asr):
    sdk = openai.OpenAI(http_client=speakers_client, base_url="http://testserver/v1", api_key="x", max_retries=0)
    reply = sdk.audio.transcriptions.create(model=ASR, file=("a.wav", WAV), response_format="diarized_json")
    assert isinstance(reply, openai.types.audio.TranscriptionDiarized)
    assert reply.task == "transcribe" and reply.duration == 1.0
    (segment,) = reply.segments
    assert segment.type == "transcript.text.segment" and segment.speaker == "SPEAKER_00"
    assert segment.text == reply.text and segment.id == "seg_0"
    # Both ran on the same bytes; the ASR was asked for no speakers and no subtitles of its own.
    assert diarizer.media == asr.media == [WAV]
    assert asr.options[0].diarize is False and asr.options[0].subtitles is None


def test_known_speakers_and_counts_reach_the_diarizer(speakers_client, diarizer, asr):
    clip = "data:audio/wav;base64," + base64.b64encode(WAV).decode()
    sdk = openai.OpenAI(http_client=speakers_client, base_url="http://testserver/v1", api_key="x", max_retries=0)
    reply = sdk.audio.transcriptions.create(
        model=ASR,
        file=("a.wav", WAV),
        response_format="diarized_json",
        known_speaker_names=["agent", "customer"],
        known_speaker_references=[clip, clip],
        extra_body={"num_speakers": 2},
    )
    assert reply.segments[0].speaker == "agent"
    options = diarizer.options[0]
    assert options.num_speakers == 2 and options.known_speaker_names == ["agent", "customer"]
    assert options.known_speaker_references == [clip, clip]
    assert asr.options[0].known_speaker_references == []  # the clips go to the Diarizer only


def test_verbose_json_with_diarize_has_speakers(speakers_client):
    body = post(speakers_client, response_format="verbose_json", diarize="true").json()
    assert body["segments"][0]["speaker"] == "SPEAKER_00"


@pytest.mark.parametrize(
    ("response_format", "expected"),
    [
        ("srt", "1\n00:00:00,000 --> 00:00:01,000\nSPEAKER_00: 64 bytes\n"),
        ("vtt", "WEBVTT\n\n1\n00:00:00.000 --> 00:00:01.000\n<v SPEAKER_00>64 bytes\n"),
    ],
)
def test_subtitles_with_diarize_carry_the_speaker(speakers_client, response_format, expected):
    reply = post(speakers_client, response_format=response_format, diarize="true")
    assert reply.status_code == 200 and reply.text == expected


@pytest.mark.parametrize("response_format", ["json", "text", "srt", "vtt", "verbose_json"])
def test_diarize_off_answers_as_without_a_diarizer(speakers_client, client, diarizer, response_format):
    with_diarizer = post(speakers_client, response_format=response_format)
    without = post(client, response_format=response_format)
    assert with_diarizer.content == without.content and diarizer.media == []


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"min_speakers": "3", "max_speakers": "2"}, "min_speakers"),
        ({"num_speakers": "4", "max_speakers": "2"}, "num_speakers"),
        ({"num_speakers": "1", "min_speakers": "2"}, "num_speakers"),
        ({"num_speakers": "0"}, "num_speakers"),
        ({"max_speakers": "-1"}, "max_speakers"),
        ({"known_speaker_names[]": ["a", "b"], "known_speaker_references[]": [CLIP]}, "known_speaker_names"),
        ({"known_speaker_references[]": [CLIP]}, "known_speaker_references"),
    ],
)  # fmt: skip
def test_contradicting_speaker_fields_are_400(speakers_client, diarizer, fields, param):
    assert_envelope(post(speakers_client, response_format="diarized_json", **fields), 400, param=param)
    assert diarizer.media == []


@pytest.mark.parametrize(
    ("fields", "param"), [({"response_format": "diarized_json"}, "diarize"), ({"diarize": "true"}, "diarize")]
)
def test_speakers_without_a_diarizer_are_400(client, asr, fields, param):  # fmt: skip
    assert_envelope(post(client, **fields), 400, param=param)
    assert asr.media == []  # refused before any model ran


def test_diarized_json_is_not_a_translation_format(speakers_client):
    reply = speakers_client.post(
        "/v1/audio/translations", data={"model": ASR, "response_format": "diarized_json"}, files={"file": ("a", WAV)}
    )
    assert_envelope(reply, 400, param="response_format")


def test_app_handle_transcribe_composes_the_same_way(speakers_client, diarizer):
    import asyncio

    transcript = asyncio.run(
        speakers_client.replica.transcribe(WAV, {"model": ASR, "diarize": True, "subtitles": "vtt"})
    )
    assert transcript.diarized and transcript.speakers == ["SPEAKER_00", "SPEAKER_01"]
    assert "<v SPEAKER_00>" in transcript.subtitles and diarizer.media == [WAV]
