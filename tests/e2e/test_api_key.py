"""`ingress.api_key_env`: the OpenAI SDK's api_key becomes a real credential."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests import serve_harness
from tests.conftest import LOCAL_MODEL

APP = "secured"
KEY = "sk-test-0123456789"


def _with_api_key(app: dict) -> None:
    app["args"]["ingress"] = {"api_key_env": "SERVE_API_KEY"}
    app["runtime_env"] = {"env_vars": {"SERVE_API_KEY": KEY}}
    # Authentication is the ingress's business: this copy of the app needs no speech models.
    for section in ("speech", "video_summary"):
        app["args"].pop(section, None)
    app["deployments"] = [d for d in app["deployments"] if d["name"] not in ("ASR", "VideoSummary")]


@pytest.fixture(scope="module")
def secured_url(local_app):
    secured = serve_harness.application("local.yaml", name=APP, route_prefix=f"/{APP}", edit=_with_api_key)
    with serve_harness.beside(secured):
        yield f"{local_app}/{APP}"


def client(base_url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base_url}/v1", api_key=key, max_retries=0, timeout=60)


def test_right_key_is_served(secured_url):
    reply = client(secured_url, KEY).chat.completions.create(
        model=LOCAL_MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=2
    )
    assert reply.choices


def test_wrong_key_is_401_for_the_sdk(secured_url):
    with pytest.raises(openai.AuthenticationError) as info:
        client(secured_url, "wrong").models.list()
    assert info.value.code == "invalid_api_key"


def test_missing_key_is_401_envelope(secured_url):
    reply = httpx.post(f"{secured_url}/v1/completions", json={"model": LOCAL_MODEL, "prompt": "x"})
    assert reply.status_code == 401 and reply.json()["error"]["code"] == "invalid_api_key"


def test_health_and_ready_need_no_key(secured_url):
    assert httpx.get(f"{secured_url}/health").status_code == 200
    assert httpx.get(f"{secured_url}/ready", timeout=30).status_code == 200


def test_uploads_need_the_key_too(secured_url):
    reply = httpx.post(
        f"{secured_url}/v1/audio/transcriptions", data={"model": "whisper-1"}, files={"file": ("a.wav", b"x")}
    )
    assert reply.status_code == 401 and reply.json()["error"]["code"] == "invalid_api_key"
