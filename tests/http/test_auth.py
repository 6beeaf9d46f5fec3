"""`ingress.api_key_env`: the OpenAI SDK's api_key becomes a real credential, probes stay open."""

from __future__ import annotations

import openai
import pytest
from fastapi.routing import APIRoute
from starlette.testclient import TestClient

from tests.http.support import LLM, assert_envelope

KEY = "sk-test-0123456789"
OPEN = {"/health", "/ready"}


@pytest.fixture()
def secured(serve_ingress, backends) -> TestClient:
    return serve_ingress(**backends, api_key=KEY)


def sdk(http: TestClient, key: str) -> openai.OpenAI:
    # TestClient is an httpx.Client: the SDK's requests go straight into the app.
    return openai.OpenAI(http_client=http, base_url="http://testserver/v1", api_key=key, max_retries=0)


def test_right_key_is_served(secured):
    reply = sdk(secured, KEY).chat.completions.create(
        model=LLM, messages=[{"role": "user", "content": "hi"}], max_tokens=2
    )
    assert reply.choices[0].message.content


def test_wrong_key_is_401_for_the_sdk(secured):
    with pytest.raises(openai.AuthenticationError) as info:
        sdk(secured, "wrong").models.list()
    assert info.value.code == "invalid_api_key"


def test_missing_key_is_401_envelope(secured, llm):
    reply = secured.post("/v1/completions", json={"model": LLM, "prompt": "x"})
    assert_envelope(reply, 401, code="invalid_api_key")
    assert llm.prompts == [], "refused before any model was called"


def test_health_and_ready_need_no_key(secured):
    assert secured.get("/health").status_code == 200
    assert secured.get("/ready").status_code == 200


def test_uploads_need_the_key_too(secured, asr):
    reply = secured.post("/v1/audio/transcriptions", data={"model": "whisper-1"}, files={"file": ("a.wav", b"x")})
    assert_envelope(reply, 401, code="invalid_api_key")
    assert asr.media == []


@pytest.mark.parametrize(
    "authorization",
    [f"Basic {KEY}", KEY, f"Bearer {KEY}x", f"Bearer {KEY[:-1]}", "Bearer", ""],
    ids=["other-scheme", "no-scheme", "longer", "shorter", "no-key", "empty"],
)
def test_only_a_bearer_token_with_the_exact_key_passes(secured, authorization):
    reply = secured.get("/v1/models", headers={"authorization": authorization})
    assert_envelope(reply, 401, code="invalid_api_key")


def test_the_scheme_is_case_insensitive_and_spaces_around_the_key_do_not_count(secured):
    assert secured.get("/v1/models", headers={"authorization": f"bearer  {KEY} "}).status_code == 200


def test_every_api_route_but_the_probes_needs_the_key(secured):
    routes = [r for r in secured.app.routes if isinstance(r, APIRoute) and r.path not in OPEN]
    assert len(routes) >= 15, "the routes are found where Serve serves them"
    for route in routes:
        path = route.path.replace("{name}", "kb").replace("{item_id}", "1")
        for method in route.methods:
            assert_envelope(secured.request(method, path), 401, code="invalid_api_key")


def test_without_a_configured_key_nothing_is_asked(client):
    assert client.get("/v1/models").status_code == 200


def test_a_configured_but_unset_variable_fails_the_replica_at_start(serve_ingress, backends, monkeypatch):
    monkeypatch.delenv("SERVE_API_KEY_NOT_SET", raising=False)
    with pytest.raises(RuntimeError, match="SERVE_API_KEY_NOT_SET"):
        serve_ingress(**backends, api_key_env="SERVE_API_KEY_NOT_SET")
