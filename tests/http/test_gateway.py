"""The gateway over HTTP: LiteLLM's key routes, enforcement (401/403/429), headers, usage, the cache.

The real Ingress and middlewares over fake models, and the real embedded state (SQLite in a tmp
dir) behind a fake handle, as the GatewayState deployment serves it.
"""

from __future__ import annotations

import json
import time
from typing import Any

import openai
import pytest
from starlette.testclient import TestClient

from serve_app.config import CacheConfig, GatewayConfig
from serve_app.gateway.service import STATE_SERVICE
from serve_app.gateway.sqlite import SQLiteState
from tests.fakes import FakeHandle
from tests.http.support import ASR, DETECTOR, LLM, assert_envelope

MASTER = "sk-master-0123456789"
ADMIN = {"authorization": f"Bearer {MASTER}"}
CHAT = {"model": LLM, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


@pytest.fixture()
def state(tmp_path) -> SQLiteState:
    return SQLiteState(tmp_path / "state.sqlite3")


@pytest.fixture()
def start_gateway(serve_ingress, backends, state, monkeypatch):
    monkeypatch.setenv("SERVE_MASTER_KEY", MASTER)

    def start(**fields) -> TestClient:
        services = {STATE_SERVICE: FakeHandle(state, name="GatewayState")}
        return serve_ingress(backends["models"], services, gateway=GatewayConfig(**fields))

    return start


@pytest.fixture()
def gw(start_gateway) -> TestClient:
    return start_gateway()


def generate(client: TestClient, **fields) -> str:
    reply = client.post("/key/generate", json=fields, headers=ADMIN)
    assert reply.status_code == 200, reply.text
    return reply.json()["key"]


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def usage(client: TestClient, count: int, **params) -> dict:
    """/usage once `count` entries of keys are in (settling runs after each answer, in the background);
    the master key's own calls (these polls among them) are left out."""
    deadline = time.monotonic() + 5
    while True:
        body = client.get("/usage", params=params, headers=ADMIN).json()
        body["data"] = [e for e in body["data"] if e["token"] != "master"]
        if len(body["data"]) >= count or time.monotonic() > deadline:
            return body
        time.sleep(0.02)


def test_generate_answers_the_key_once_and_stores_only_its_hash(gw, state):
    reply = gw.post("/key/generate", json={"key_alias": "ci", "models": [LLM], "rpm_limit": 5}, headers=ADMIN)
    body = reply.json()
    assert body["key"].startswith("sk-") and body["key_alias"] == "ci" and body["rpm_limit"] == 5
    assert body["key"] not in str(state._db.execute("SELECT * FROM keys").fetchall())
    info = gw.get("/key/info", params={"key": body["key"]}, headers=ADMIN).json()
    assert info["info"]["token"] == body["token"] and info["info"]["models"] == [LLM]


def test_a_key_is_served_through_the_openai_sdk(gw):
    key = generate(gw)
    sdk = openai.OpenAI(http_client=gw, base_url="http://testserver/v1", api_key=key, max_retries=0)
    assert sdk.chat.completions.create(**CHAT).choices[0].message.content


@pytest.mark.parametrize(
    "authorization",
    [
        "",
        "Bearer",
        "Bearer sk-unknown-0123456789",
        "Bearer ' OR 1=1 --",
        "Bearer sk-x'; DROP TABLE keys; --",
        "Bearer sk-" + "a" * 20000,
        "Basic " + MASTER,
        "Bearer \x00\x01",
    ],
    ids=["none", "no-key", "unknown", "sql", "sql-shaped-key", "huge", "other-scheme", "control-bytes"],
)
def test_bad_keys_are_401_never_500(gw, llm, authorization):
    reply = gw.post("/v1/chat/completions", json=CHAT, headers={"authorization": authorization})
    assert_envelope(reply, 401, code="invalid_api_key")
    assert llm.prompts == []
    assert gw.get("/health").status_code == 200 and gw.get("/ready").status_code == 200


def test_blocked_and_expired_keys_are_401_and_unblocking_restores(gw):
    key = generate(gw)
    assert gw.post("/key/block", json={"key": key}, headers=ADMIN).json()["blocked"] is True
    assert_envelope(gw.post("/v1/chat/completions", json=CHAT, headers=bearer(key)), 401)
    gw.post("/key/unblock", json={"key": key}, headers=ADMIN)
    assert gw.post("/v1/chat/completions", json=CHAT, headers=bearer(key)).status_code == 200
    expired = generate(gw, duration="0s")
    assert_envelope(gw.post("/v1/chat/completions", json=CHAT, headers=bearer(expired)), 401)


def test_a_key_blocked_while_this_replica_holds_its_lease_is_refused_at_once(gw):
    key = generate(gw)  # no limits: its first request leases a slice of its minute
    for _ in range(2):
        assert gw.post("/v1/chat/completions", json=CHAT, headers=bearer(key)).status_code == 200
    gw.post("/key/block", json={"key": key}, headers=ADMIN)
    assert_envelope(gw.post("/v1/chat/completions", json=CHAT, headers=bearer(key)), 401)


def test_a_model_outside_the_keys_models_is_403(gw, llm):
    key = generate(gw, models=["some-other-model"])
    assert_envelope(gw.post("/v1/chat/completions", json=CHAT, headers=bearer(key)), 403, param="model")
    assert llm.prompts == []


def test_models_lists_only_what_the_key_may_use(gw):
    limited = gw.get("/v1/models", headers=bearer(generate(gw, models=[LLM]))).json()["data"]
    assert [card["id"] for card in limited] == [LLM]
    everything = {card["id"] for card in gw.get("/v1/models", headers=bearer(generate(gw))).json()["data"]}
    assert everything == {card["id"] for card in gw.get("/v1/models", headers=ADMIN).json()["data"]}
    assert {LLM, ASR, DETECTOR} <= everything


def test_rpm_is_exact_with_openai_headers_and_retry_after(gw):
    key = generate(gw, rpm_limit=3)
    replies = [gw.post("/v1/chat/completions", json=CHAT, headers=bearer(key)) for _ in range(5)]
    assert [r.status_code for r in replies] == [200, 200, 200, 429, 429]
    assert [r.headers["x-ratelimit-remaining-requests"] for r in replies] == ["2", "1", "0", "0", "0"]
    assert replies[0].headers["x-ratelimit-limit-requests"] == "3"
    assert replies[0].headers["x-ratelimit-reset-requests"].endswith("s")
    error = assert_envelope(replies[3], 429, code="rate_limit_exceeded")
    assert error["type"] == "requests"
    assert 1 <= int(replies[3].headers["retry-after"]) <= 60


def test_tpm_reserves_max_tokens_and_settles_to_what_was_used(gw, state):
    key = generate(gw, tpm_limit=40)
    # The fake answers 3 tokens; 4 + prompt reserved, ~10 settled: the window has room for a few.
    first = gw.post("/v1/chat/completions", json=CHAT, headers=bearer(key))
    assert first.status_code == 200 and first.headers["x-ratelimit-limit-tokens"] == "40"
    big = {**CHAT, "max_tokens": 100}
    error = assert_envelope(gw.post("/v1/chat/completions", json=big, headers=bearer(key)), 429)
    assert error["type"] == "tokens"
    usage(gw, 1)
    (row,) = state._db.execute("SELECT tokens FROM windows").fetchall()
    assert row[0] == usage(gw, 1)["totals"]["total_tokens"], "the reservation was settled to the usage"


def test_budget_spent_is_insufficient_quota(gw):
    key = generate(gw, max_budget=4)  # the fake answers 1 + 3 tokens
    assert gw.post("/v1/chat/completions", json=CHAT, headers=bearer(key)).status_code == 200
    usage(gw, 1)
    reply = gw.post("/v1/chat/completions", json=CHAT, headers=bearer(key))
    error = assert_envelope(reply, 429, code="insufficient_quota")
    assert error["type"] == "insufficient_quota"
    with pytest.raises(openai.RateLimitError):
        openai.OpenAI(http_client=gw, base_url="http://testserver/v1", api_key=key, max_retries=0).completions.create(
            model=LLM, prompt="x"
        )


def test_streams_carry_the_headers_and_settle(gw):
    key = generate(gw, rpm_limit=10, tpm_limit=10000)
    stream = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    with gw.stream("POST", "/v1/chat/completions", json=stream, headers=bearer(key)) as reply:
        assert reply.headers["x-ratelimit-remaining-requests"] == "9"
        assert reply.headers["x-cache"] == "bypass"
        assert "[DONE]" in "".join(reply.iter_text())
    (entry,) = usage(gw, 1, key=key)["data"]
    assert entry["completion_tokens"] == 3 and entry["status"] == 200 and entry["route"] == "/v1/chat/completions"


def test_max_parallel_requests_counts_in_flight(gw, state):
    key = generate(gw, max_parallel_requests=1)
    # A reservation held (an answer still streaming elsewhere) takes the one slot.
    state._db.execute("INSERT INTO reservations VALUES ('held', ?, 0, 0, ?)", (_token(gw, key), time.time() + 60))
    assert_envelope(gw.post("/v1/chat/completions", json=CHAT, headers=bearer(key)), 429, code="rate_limit_exceeded")
    state._db.execute("DELETE FROM reservations WHERE id = 'held'")
    assert gw.post("/v1/chat/completions", json=CHAT, headers=bearer(key)).status_code == 200


def _token(client: TestClient, key: str) -> str:
    return client.get("/key/info", params={"key": key}, headers=ADMIN).json()["info"]["token"]


def test_usage_by_key_and_time_and_a_key_sees_only_its_own(gw):
    alice, bob = generate(gw, key_alias="alice"), generate(gw, key_alias="bob")
    before = time.time()
    for key in (alice, bob, bob):
        assert gw.post("/v1/completions", json={"model": LLM, "prompt": "x"}, headers=bearer(key)).status_code == 200
    everyone = usage(gw, 3, start=before)
    assert [e["key_alias"] for e in everyone["data"]] == ["alice", "bob", "bob"]
    assert everyone["data"][0]["variant"] == LLM and everyone["data"][0]["latency_ms"] > 0
    own = gw.get("/usage", headers=bearer(bob)).json()
    assert {e["key_alias"] for e in own["data"]} == {"bob"} and own["totals"]["requests"] >= 2
    assert_envelope(gw.get("/usage", params={"key": alice}, headers=bearer(bob)), 403)
    assert usage(gw, 0, start=time.time() + 10)["data"] == []


def test_key_admin_routes_need_the_master_key(gw):
    key = generate(gw)
    for method, path, body in [
        ("POST", "/key/generate", {}),
        ("GET", "/key/list", None),
        ("POST", "/key/update", {"key": key, "rpm_limit": 1}),
        ("POST", "/key/delete", {"keys": [key]}),
        ("POST", "/key/block", {"key": key}),
    ]:
        assert_envelope(gw.request(method, path, json=body, headers=bearer(key)), 403, code="admin_only")
    assert gw.get("/key/info", headers=bearer(key)).json()["info"]["key_name"].startswith("sk-")


def test_update_list_and_delete(gw):
    key = generate(gw, key_alias="a")
    token = _token(gw, key)
    assert gw.post("/key/update", json={"key": token, "rpm_limit": 7}, headers=ADMIN).json()["rpm_limit"] == 7
    assert gw.get("/key/list", headers=ADMIN).json()["keys"] == [token]
    full = gw.get("/key/list", params={"return_full_object": True}, headers=ADMIN).json()
    assert full["keys"][0]["key_alias"] == "a" and full["total_count"] == 1
    assert_envelope(gw.post("/key/generate", json={"key_alias": "a"}, headers=ADMIN), 400, code="key_exists")
    assert gw.post("/key/delete", json={"keys": [key]}, headers=ADMIN).json() == {"deleted_keys": [token]}
    assert_envelope(gw.post("/v1/chat/completions", json=CHAT, headers=bearer(key)), 401)
    assert_envelope(gw.get("/key/info", params={"key": key}, headers=ADMIN), 404)
    assert_envelope(gw.post("/key/update", json={"key": "nonsense"}, headers=ADMIN), 400, param="key")
    assert_envelope(gw.post("/key/generate", json={"duration": "soon"}, headers=ADMIN), 400, param="duration")


def test_the_master_key_calls_models_unlimited_and_is_logged(gw):
    assert gw.post("/v1/chat/completions", json=CHAT, headers=ADMIN).status_code == 200
    deadline = time.monotonic() + 5
    while not (logged := gw.get("/usage", headers=ADMIN).json()["data"]):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert logged[0]["token"] == "master" and logged[0]["route"] == "/v1/chat/completions"


def test_probes_stay_open(gw):
    assert gw.get("/health").status_code == 200
    assert gw.get("/ready").status_code == 200


def test_the_cache_answers_the_same_greedy_request_again(start_gateway, llm):
    gw = start_gateway(cache=CacheConfig(routes=["chat"], ttl_s=60, max_entries=2))
    key = generate(gw)
    greedy = {**CHAT, "temperature": 0}
    first = gw.post("/v1/chat/completions", json=greedy, headers=bearer(key))
    second = gw.post("/v1/chat/completions", json=greedy, headers=bearer(key))
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("miss", "hit")
    assert first.json() == second.json() and len(llm.prompts) == 1
    other_seed = gw.post("/v1/chat/completions", json={**greedy, "seed": 3}, headers=bearer(key))
    assert other_seed.headers["x-cache"] == "miss", "every sampling field is in the cache key"
    sampled = gw.post("/v1/chat/completions", json=CHAT, headers=bearer(key))
    assert sampled.headers["x-cache"] == "bypass", "temperature 1 is not deterministic"
    refused = gw.post("/v1/chat/completions", json=greedy, headers={**bearer(key), "x-cache-control": "no-cache"})
    assert refused.headers["x-cache"] == "bypass"
    with gw.stream("POST", "/v1/chat/completions", json={**greedy, "stream": True}, headers=bearer(key)) as stream:
        assert stream.headers["x-cache"] == "bypass", "a stream is never answered from the cache"
    hits = [e for e in usage(gw, 6)["data"] if e["cache_hit"]]
    assert len(hits) == 1


def test_the_cache_is_opt_in_per_request_and_per_key(start_gateway):
    gw = start_gateway(cache=CacheConfig())
    greedy = {**CHAT, "temperature": 0}
    plain = generate(gw)
    assert gw.post("/v1/chat/completions", json=greedy, headers=bearer(plain)).headers["x-cache"] == "bypass"
    asked = {**bearer(plain), "x-cache-control": "cache"}
    assert gw.post("/v1/chat/completions", json=greedy, headers=asked).headers["x-cache"] == "miss"
    assert gw.post("/v1/chat/completions", json=greedy, headers=asked).headers["x-cache"] == "hit"
    cached_key = generate(gw, metadata={"cache": True})
    assert gw.post("/v1/chat/completions", json=greedy, headers=bearer(cached_key)).headers["x-cache"] == "hit"


def test_the_state_down_is_a_503_not_a_hang(serve_ingress, backends, monkeypatch):
    monkeypatch.setenv("SERVE_MASTER_KEY", MASTER)

    async def never(*_args):
        import asyncio

        await asyncio.sleep(60)

    services = {STATE_SERVICE: FakeHandle.of("GatewayState", admit=never)}
    gw = serve_ingress(backends["models"], services, gateway=GatewayConfig(timeout_s=0.2))
    started = time.monotonic()
    reply = gw.post("/v1/chat/completions", json=CHAT, headers=bearer("sk-some-0123456789"))
    assert_envelope(reply, 503, code="gateway_unavailable")
    assert time.monotonic() - started < 5 and reply.headers["retry-after"] == "1"


def test_without_a_gateway_the_key_routes_are_404(client):
    assert_envelope(client.post("/key/generate", json={}), 404)


def test_the_keys_cli_drives_the_admin_routes(gw, monkeypatch, capsys):
    import httpx

    from serve_app.__main__ import main

    def through_the_app(method, url, **kwargs):
        kwargs.pop("timeout", None)
        return gw.request(method, url.removeprefix("http://127.0.0.1:8000"), **kwargs)

    monkeypatch.setattr(httpx, "request", through_the_app)
    assert main(["keys", "generate", "--alias", "cli", "--rpm-limit", "2", "--models", LLM]) == 0
    key = printed(capsys)["key"]
    assert main(["keys", "update", key, "--tpm-limit", "99"]) == 0
    assert printed(capsys)["tpm_limit"] == 99
    assert main(["keys", "block", key]) == 0 and printed(capsys)["blocked"] is True
    assert main(["keys", "list"]) == 0 and printed(capsys)["total_count"] == 1
    assert main(["keys", "info", key]) == 0 and printed(capsys)["info"]["key_alias"] == "cli"
    time.sleep(0.2)  # settled in the background
    assert main(["keys", "usage", "--since-s", "60"]) == 0 and printed(capsys)["data"]
    assert main(["keys", "delete", key]) == 0
    assert main(["keys", "info", key]) == 1 and "No such key" in capsys.readouterr().err
    monkeypatch.delenv("SERVE_MASTER_KEY")
    assert main(["keys", "list"]) == 1 and "SERVE_MASTER_KEY" in capsys.readouterr().err


def printed(capsys) -> Any:
    """The CLI's JSON on stdout. A Ray session another test started in this process forwards its
    replicas' log lines to the same stdout at any moment: they are not the CLI's."""
    lines = capsys.readouterr().out.splitlines()
    return json.loads("\n".join(line for line in lines if not line.startswith(("\x1b[", "("))))


def test_an_upload_for_a_model_outside_the_keys_models_is_403(gw, asr):
    key = generate(gw, models=[LLM])
    files = {"file": ("a.wav", b"RIFF")}
    reply = gw.post("/v1/audio/transcriptions", data={"model": "whisper-1"}, files=files, headers=bearer(key))
    assert_envelope(reply, 403, param="model")
    assert asr.media == []


def test_an_unset_master_key_fails_the_replica_at_start(serve_ingress, backends, state, monkeypatch):
    monkeypatch.delenv("SERVE_MASTER_KEY", raising=False)
    services = {STATE_SERVICE: FakeHandle(state, name="GatewayState")}
    with pytest.raises(RuntimeError, match="SERVE_MASTER_KEY"):
        serve_ingress(backends["models"], services, gateway=GatewayConfig())
