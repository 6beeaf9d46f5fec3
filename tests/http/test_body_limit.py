"""BodySizeLimit on the real routes: 413 before an oversize body is parsed, JSON or multipart, declared or chunked."""

from __future__ import annotations

import pytest

from tests.http.support import ASR, LLM, assert_envelope

JSON_LIMIT = 2048
UPLOAD_LIMIT = 8192


@pytest.fixture()
def client(serve_ingress, backends):
    return serve_ingress(**backends, max_request_bytes=JSON_LIMIT, max_upload_bytes=UPLOAD_LIMIT)


def _chunks(data: bytes, size: int = 1000):
    # A generator body: httpx sends it chunked, without Content-Length.
    for i in range(0, len(data), size):
        yield data[i : i + size]


def upload(client, size: int):
    return client.post("/v1/audio/transcriptions", data={"model": ASR}, files={"file": ("a.wav", b"x" * size)})


def assert_413(reply) -> None:
    error = assert_envelope(reply, 413, code="payload_too_large")
    assert "limit" in error["message"]


def test_uploads_under_the_upload_limit_pass_even_when_over_the_json_limit(client, asr):
    reply = upload(client, JSON_LIMIT * 2)
    assert reply.status_code == 200, reply.text
    assert [len(m) for m in asr.media] == [JSON_LIMIT * 2]


def test_declared_oversize_upload_is_413(client, asr):
    assert_413(upload(client, UPLOAD_LIMIT + 1))
    assert asr.media == []


def test_chunked_oversize_upload_is_cut_off_with_413(client, asr):
    boundary = "b0undary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\n{ASR}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'.encode()
        + b"x" * (UPLOAD_LIMIT * 2)
        + f"\r\n--{boundary}--\r\n".encode()
    )
    headers = {"content-type": f"multipart/form-data; boundary={boundary}"}
    assert_413(client.post("/v1/audio/transcriptions", content=_chunks(body), headers=headers))
    assert asr.media == []


def test_json_bodies_get_the_json_limit(client, llm):
    assert client.post("/v1/completions", json={"model": LLM, "prompt": "hi"}).status_code == 200
    assert_413(client.post("/v1/completions", json={"model": LLM, "prompt": "x" * JSON_LIMIT}))
    chunked = _chunks(b'{"model": "' + LLM.encode() + b'", "prompt": "' + b"x" * JSON_LIMIT + b'"}')
    assert_413(client.post("/v1/completions", content=chunked, headers={"content-type": "application/json"}))
    assert llm.prompts == ["hi"]


def test_the_app_keeps_serving_after_a_cut_off_body(client):
    chunked = _chunks(b"x" * (JSON_LIMIT * 3))
    assert_413(client.post("/v1/completions", content=chunked, headers={"content-type": "application/json"}))
    assert client.post("/v1/completions", json={"model": LLM, "prompt": "hi"}).status_code == 200
