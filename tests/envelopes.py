"""The check every error answer passes, over HTTP to the session app or through the TestClient."""

from __future__ import annotations

import httpx


def assert_envelope(reply: httpx.Response, status: int, *, param: str | None = None, code: str | None = None) -> dict:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"] == "application/json"
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    if param is not None:
        assert error["param"] == param
    if code is not None:
        assert error["code"] == code
    return error
