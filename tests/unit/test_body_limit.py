"""BodySizeLimit: 413 before an oversize body is parsed, for JSON and multipart, declared or chunked."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Annotated

import pytest
from fastapi import FastAPI, File, UploadFile
from fastapi.testclient import TestClient

from serve_app.errors import APIError
from serve_app.http.body_limit import BodySizeLimit
from serve_app.http.errors import error_response

JSON_LIMIT = 2048
UPLOAD_LIMIT = 8192


@pytest.fixture(scope="module")
def client() -> TestClient:
    app = FastAPI()
    app.add_middleware(BodySizeLimit)
    app.state.limits = SimpleNamespace(max_request_bytes=JSON_LIMIT, max_upload_bytes=UPLOAD_LIMIT)
    app.add_exception_handler(APIError, lambda _, exc: error_response(exc))

    @app.post("/upload")
    async def upload(file: Annotated[UploadFile, File()]) -> dict:
        return {"size": len(await file.read())}

    @app.post("/json")
    async def echo(body: dict) -> dict:
        return {"keys": len(body)}

    return TestClient(app)


def _chunks(data: bytes, size: int = 1000):
    for i in range(0, len(data), size):
        yield data[i : i + size]


def assert_413(reply) -> None:
    assert reply.status_code == 413, reply.text
    error = reply.json()["error"]
    assert error["code"] == "payload_too_large"
    assert "limit" in error["message"]


def test_uploads_under_the_upload_limit_pass_even_when_over_the_json_limit(client):
    reply = client.post("/upload", files={"file": ("a.bin", b"x" * (JSON_LIMIT * 2))})
    assert reply.status_code == 200
    assert reply.json() == {"size": JSON_LIMIT * 2}


def test_declared_oversize_upload_is_413(client):
    assert_413(client.post("/upload", files={"file": ("a.bin", b"x" * (UPLOAD_LIMIT + 1))}))


def test_chunked_oversize_upload_is_cut_off_with_413(client):
    boundary = "b0undary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.bin"\r\n\r\n'.encode()
        + b"x" * (UPLOAD_LIMIT * 2)
        + f"\r\n--{boundary}--\r\n".encode()
    )
    reply = client.post(
        "/upload", content=_chunks(body), headers={"content-type": f"multipart/form-data; boundary={boundary}"}
    )
    assert_413(reply)


def test_json_bodies_get_the_json_limit(client):
    assert client.post("/json", json={"a": 1}).json() == {"keys": 1}
    assert_413(client.post("/json", json={"a": "x" * JSON_LIMIT}))
    chunked = _chunks(b'{"a": "' + b"x" * JSON_LIMIT + b'"}')
    assert_413(client.post("/json", content=chunked, headers={"content-type": "application/json"}))


def test_the_app_keeps_serving_after_a_cut_off_body(client):
    assert_413(
        client.post("/json", content=_chunks(b"x" * (JSON_LIMIT * 3)), headers={"content-type": "application/json"})
    )
    assert client.post("/json", json={"b": 2}).status_code == 200
