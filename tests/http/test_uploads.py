"""Multipart parsing of the upload routes: the fields a model call gets, and the 4xx for bad forms.

Decoding the media is the model deployments' business (tests/e2e); the ingress only parses.
"""

from __future__ import annotations

import base64

import openai
import pytest

from tests.http.support import ASR, DETECTOR, assert_envelope

AUDIO = ("a.wav", b"RIFF fake audio")
IMAGE = ("a.png", b"\x89PNG fake image")


def transcribe(http, data: dict | None = None, files: dict | None = None, **kwargs):
    data = {"model": ASR} if data is None else data
    files = {"file": AUDIO} if files is None else files
    return http.post("/v1/audio/transcriptions", data=data, files=files, **kwargs)


def test_the_sdk_uploads_a_transcription(client, asr):
    sdk = openai.OpenAI(http_client=client, base_url="http://testserver/v1", api_key="unused", max_retries=0)
    reply = sdk.audio.transcriptions.create(
        model="whisper-1", file=AUDIO, response_format="verbose_json", timestamp_granularities=["segment"]
    )
    assert reply.text == f"{len(AUDIO[1])} bytes"
    assert asr.media == [AUDIO[1]], "the alias reaches the ASR, with the file's bytes"


def test_the_sdk_uploads_a_translation_which_asks_for_whispers_translate_task(client, asr):
    sdk = openai.OpenAI(http_client=client, base_url="http://testserver/v1", api_key="unused", max_retries=0)
    reply = sdk.audio.translations.create(model="whisper-1", file=AUDIO, prompt="Names: Priya", temperature=0.2)
    assert reply.text == f"{len(AUDIO[1])} bytes"
    options = asr.options[-1]
    assert (options.task, options.prompt, options.temperature, options.language) == (
        "translate",
        "Names: Priya",
        0.2,
        None,
    )


@pytest.mark.parametrize(
    ("data", "param"),
    [
        ({}, "model"),
        ({"model": ASR, "response_format": "xml"}, "response_format"),
        ({"model": ASR, "temperature": 2}, "temperature"),
    ],
    ids=["no-model", "bad-format", "bad-temperature"],
)
def test_a_bad_translation_form_is_400_naming_the_field(client, asr, data, param):
    reply = client.post("/v1/audio/translations", data=data, files={"file": AUDIO})
    assert_envelope(reply, 400, param=param)
    assert asr.media == []
    assert client.post("/v1/audio/translations", data={"model": ASR}, files={"file": AUDIO}).status_code == 200


@pytest.mark.parametrize(("response_format", "media_type"), [("text", "text/plain"), ("srt", "text/plain")])
def test_text_response_formats(client, response_format, media_type):
    reply = transcribe(client, data={"model": ASR, "response_format": response_format})
    assert reply.status_code == 200 and reply.headers["content-type"].startswith(media_type)
    assert f"{len(AUDIO[1])} bytes" in reply.text


@pytest.mark.parametrize(
    ("data", "files", "param"),
    [
        ({"model": ASR}, {}, "file"),
        ({"model": ASR, "file": "not a file"}, {}, "file"),
        ({}, {"file": AUDIO}, "model"),
        ({"model": ""}, {"file": AUDIO}, "model"),
        ({"model": ASR, "temperature": "hot"}, {"file": AUDIO}, "temperature"),
        ({"model": ASR, "response_format": "xml"}, {"file": AUDIO}, "response_format"),
        ({"model": ASR, "timestamp_granularities[]": "word"}, {"file": AUDIO}, "timestamp_granularities"),
    ],
    ids=["no-file", "file-as-text", "no-model", "empty-model", "bad-temperature", "bad-format", "words-need-verbose"],
)
def test_a_bad_transcription_form_is_400_naming_the_field(client, asr, data, files, param):
    # httpx sends a form without files urlencoded: give it a file field it ignores to keep multipart.
    files = files or {"unrelated": ("x", b"")}
    assert_envelope(transcribe(client, data=data, files=files), 400, param=param)
    assert asr.media == []


def test_an_unknown_asr_model_is_404(client):
    assert_envelope(transcribe(client, data={"model": "whisper-9"}), 404, param="model", code="model_not_found")


def test_json_to_an_upload_route_is_415(client):
    assert_envelope(client.post("/v1/audio/transcriptions", json={"model": ASR}), 415)


def test_a_multipart_detection_passes_its_fields_and_repeated_classes(client, detector):
    reply = client.post(
        "/v1/detections",
        data={"model": DETECTOR, "conf": "0.5", "classes[]": ["person", "3"]},
        files={"image": IMAGE},
    )
    assert reply.status_code == 200, reply.text
    (request,) = detector.requests
    # Form values stay strings ("3"): the detector reads digits as class ids.
    assert (request.image, request.conf, request.classes) == (IMAGE[1], 0.5, ["person", "3"])


def test_a_json_detection_takes_base64(client, detector):
    image = base64.b64encode(IMAGE[1]).decode()
    assert client.post("/v1/detections", json={"model": DETECTOR, "image": image}).status_code == 200
    assert detector.requests[0].image == image


@pytest.mark.parametrize(
    ("kwargs", "status", "param", "code"),
    [
        ({"data": {"model": DETECTOR, "image": "not a file"}, "files": {"x": ("x", b"")}}, 400, "image", None),
        ({"data": {"model": DETECTOR}, "files": {"x": ("x", b"")}}, 400, "image", None),
        ({"data": {"model": DETECTOR, "conf": "2"}, "files": {"image": IMAGE}}, 400, "conf", None),
        ({"data": {}, "files": {"image": IMAGE}}, 400, "model", None),
        ({"content": b"{", "headers": {"content-type": "application/json"}}, 400, None, "invalid_json"),
        ({"data": {"model": "yolo-9"}, "files": {"image": IMAGE}}, 404, "model", "model_not_found"),
    ],
    ids=["image-as-text", "no-image", "conf-out-of-range", "no-model", "broken-json", "unknown-model"],
)
def test_a_bad_detection_is_4xx(client, detector, kwargs, status, param, code):
    assert_envelope(client.post("/v1/detections", **kwargs), status, param=param, code=code)
    assert detector.requests == []
