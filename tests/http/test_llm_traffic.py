"""Aliases, adapters and fallbacks at the Ingress: which LLM answers, and what the response says of it."""

from __future__ import annotations

import time
from collections import Counter

import pytest
from ray.serve.exceptions import BackPressureError

from serve_app.config import ConfigError
from serve_app.errors import NotFound
from tests.fakes import FakeHandle, FakeLLM
from tests.http.support import assert_envelope

BLUE, GREEN, ADAPTER = "model-blue", "model-green", "model-blue-lora"


def full_queue() -> BackPressureError:
    return BackPressureError(num_queued_requests=4, max_queued_requests=4, status_code=503, retry_after_s=2)


def alias(blue: float, green: float, **extra) -> dict:
    targets = [{"model": BLUE, "weight": blue}, {"model": GREEN, "weight": green}]
    return {"aliases": [{"name": "assistant", "targets": targets, **extra}]}


def chat(model: str = "assistant", **fields) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, **fields}


@pytest.fixture()
def handles() -> dict[str, FakeHandle]:
    blue = FakeHandle(FakeLLM("blue answer", name=BLUE), name="LLM-blue")
    return {BLUE: blue, ADAPTER: blue, GREEN: FakeHandle(FakeLLM("green answer", name=GREEN), name="LLM-green")}


@pytest.fixture()
def start(serve_ingress, handles):
    def start(user_config: dict | None = None, services: dict | None = None, **kwargs):
        models = {"llm": handles}
        return serve_ingress(models, services, llm_adapters={ADAPTER: BLUE}, user_config=user_config, **kwargs)

    return start


def test_an_alias_answers_from_its_target_and_says_which(start):
    client = start(alias(0, 1))
    reply = client.post("/v1/chat/completions", json=chat())
    assert reply.status_code == 200, reply.text
    assert reply.json()["model"] == GREEN
    assert reply.json()["choices"][0]["message"]["content"] == "green answer"
    assert reply.headers["x-model-variant"] == GREEN
    assert "x-model-fallback" not in reply.headers


def test_a_model_id_is_served_as_itself_with_its_variant_header(start):
    reply = start(alias(1, 1)).post("/v1/completions", json={"model": BLUE, "prompt": "hi"})
    assert (reply.status_code, reply.json()["model"], reply.headers["x-model-variant"]) == (200, BLUE, BLUE)


def test_an_adapter_goes_to_its_base_deployment_routed_by_its_multiplexed_id(start, handles):
    client = start(alias(1, 0))
    reply = client.post("/v1/chat/completions", json=chat(model=ADAPTER))
    assert (reply.status_code, reply.json()["model"]) == (200, ADAPTER)
    client.post("/v1/chat/completions", json=chat(model=BLUE))
    chats = [c for c in handles[BLUE].calls if c.method == "chat"]
    assert [(c.args[0].model, c.multiplexed_model_id) for c in chats] == [(ADAPTER, ADAPTER), (BLUE, "")]


def test_the_split_follows_the_weights(start):
    client = start(alias(3, 1, sticky=False))
    seen = Counter(client.post("/v1/chat/completions", json=chat()).json()["model"] for _ in range(400))
    assert 0.65 < seen[BLUE] / 400 < 0.85, seen


def test_a_user_stays_on_one_variant_and_users_spread_over_both(start):
    client = start(alias(1, 1))
    for user in ("ana", "bo", "cy"):
        assert len({client.post("/v1/chat/completions", json=chat(user=user)).json()["model"] for _ in range(20)}) == 1
    picked = {client.post("/v1/chat/completions", json=chat(user=f"user-{i}")).json()["model"] for i in range(40)}
    assert picked == {BLUE, GREEN}


def test_without_a_user_field_the_api_key_keeps_the_caller_on_one_variant(start):
    client = start(alias(1, 1), api_key="sk-one")
    headers = {"Authorization": "Bearer sk-one"}
    answers = {client.post("/v1/chat/completions", json=chat(), headers=headers).json()["model"] for _ in range(20)}
    assert len(answers) == 1


def test_a_full_target_falls_back_and_says_so(start, handles):
    handles[GREEN].refusal = full_queue()
    reply = start(alias(0, 1, fallback=BLUE)).post("/v1/chat/completions", json=chat())
    assert reply.status_code == 200, reply.text
    assert reply.json()["model"] == BLUE
    assert (reply.headers["x-model-variant"], reply.headers["x-model-fallback"]) == (BLUE, GREEN)


def test_a_full_target_falls_back_for_a_stream_too(start, handles):
    handles[GREEN].refusal = full_queue()
    with start(alias(0, 1, fallback=BLUE)).stream("POST", "/v1/chat/completions", json=chat(stream=True)) as reply:
        body = "".join(reply.iter_text())
    assert reply.status_code == 200
    assert (reply.headers["x-model-variant"], reply.headers["x-model-fallback"]) == (BLUE, GREEN)
    assert '"model":"model-blue"' in body and "data: [DONE]" in body


def test_a_full_target_without_fallback_is_a_503(start, handles):
    handles[GREEN].refusal = full_queue()
    client = start(alias(0, 1))
    assert_envelope(client.post("/v1/chat/completions", json=chat()), 503, code="server_overloaded")
    assert client.post("/v1/chat/completions", json=chat(model=BLUE)).status_code == 200


def test_an_unknown_model_is_a_404_naming_the_param_and_the_aliases(start):
    client = start(alias(1, 1))
    error = assert_envelope(
        client.post("/v1/chat/completions", json=chat(model="nope")), 404, param="model", code="model_not_found"
    )
    assert "assistant" in error["message"] and GREEN in error["message"]
    assert client.post("/v1/chat/completions", json=chat()).status_code == 200


def test_models_lists_models_adapters_with_their_parent_and_aliases_with_their_split(start):
    cards = {c["id"]: c for c in start(alias(90, 10, fallback=BLUE)).get("/v1/models").json()["data"]}
    assert set(cards) == {BLUE, GREEN, ADAPTER, "assistant"}
    assert cards[ADAPTER]["parent"] == BLUE and cards[BLUE]["parent"] is None
    assert cards["assistant"]["targets"] == [{"model": BLUE, "weight": 90.0}, {"model": GREEN, "weight": 10.0}]
    assert cards["assistant"]["fallback"] == BLUE


def test_new_weights_apply_to_the_next_request(start):
    client = start(alias(1, 0))
    assert client.post("/v1/chat/completions", json=chat(user="u")).json()["model"] == BLUE
    client.replica.reconfigure(alias(0, 1))
    assert client.post("/v1/chat/completions", json=chat(user="u")).json()["model"] == GREEN


@pytest.mark.parametrize(
    ("table", "field"),
    [
        (alias(-1, 1), "aliases.0.targets.0.weight"),
        (alias(0, 0), "aliases.0: Value error, target weights sum to 0"),
        ({"aliases": [{"name": "a", "targets": [{"model": "a", "weight": 1}]}]}, "points at itself"),
        ({"aliases": [{"name": "a", "targets": [{"model": "nope", "weight": 1}]}]}, "aliases.0.targets.0.model"),
        ({"aliases": [{"name": BLUE, "targets": [{"model": GREEN, "weight": 1}]}]}, "aliases.0.name"),
        ({"aliases": [alias(1, 1)["aliases"][0]] * 2}, "defined twice"),
        (alias(1, 1, fallback="nope"), "aliases.0.fallback"),
    ],
)
def test_a_bad_traffic_table_is_refused_naming_the_field(start, table, field):
    client = start()
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        client.replica.reconfigure(table)


def test_a_key_given_an_alias_may_use_it_and_its_usage_names_the_variant(start, tmp_path, monkeypatch):
    from serve_app.config import GatewayConfig
    from serve_app.gateway.service import STATE_SERVICE
    from serve_app.gateway.sqlite import SQLiteState

    monkeypatch.setenv("SERVE_MASTER_KEY", "sk-master-0123456789")
    admin = {"authorization": "Bearer sk-master-0123456789"}
    state = FakeHandle(SQLiteState(tmp_path / "state.sqlite3"), name="GatewayState")
    client = start(alias(0, 1), services={STATE_SERVICE: state}, gateway=GatewayConfig())
    key = client.post("/key/generate", json={"models": ["assistant"]}, headers=admin).json()["key"]
    caller = {"authorization": f"Bearer {key}"}
    reply = client.post("/v1/chat/completions", json=chat(), headers=caller)
    assert (reply.status_code, reply.json()["model"]) == (200, GREEN)  # a target the key does not list
    refused = client.post("/v1/chat/completions", json=chat(model=GREEN), headers=caller)
    assert_envelope(refused, 403, param="model")
    for _ in range(250):  # usage is settled in the background, in batches
        entries = [e for e in client.get("/usage", headers=admin).json()["data"] if e["token"] != "master"]
        if len(entries) >= 2:
            break
        time.sleep(0.02)
    answered = next(e for e in entries if e["status"] == 200)
    assert (answered["model"], answered["variant"]) == ("assistant", GREEN)


SUMMARY_LLM = "video_summary.llm_model"


@pytest.fixture()
def summaries() -> tuple[FakeHandle, list]:
    """A pipeline that records the LLM each request reaches it with, then refuses (a 404 is enough here)."""
    seen: list[str | None] = []

    def summarize(_media, options):
        seen.append(options.model)
        raise NotFound("recorded", param="model")

    return FakeHandle.of("VideoSummary", summarize=summarize), seen


def test_a_pipeline_configured_with_an_alias_gets_the_target_picked_per_request(start, summaries):
    pipeline, seen = summaries
    client = start(alias(0, 1), services={"video_summary": pipeline}, pipeline_llms={SUMMARY_LLM: "assistant"})
    client.post("/v1/pipelines/video-summary", files={"file": ("a.mp4", b"x")})
    client.post("/v1/pipelines/video-summary", data={"model": BLUE}, files={"file": ("a.mp4", b"x")})
    assert seen == [GREEN, BLUE]  # the configured alias resolved; a request's own model wins


def test_a_pipeline_alias_missing_from_the_traffic_table_is_refused_naming_the_field(start):
    client = start(pipeline_llms={SUMMARY_LLM: "helper"})
    with pytest.raises(ConfigError, match=r"video_summary\.llm_model: 'helper' is not an LLM, adapter or alias"):
        client.replica.reconfigure(alias(1, 1))


def test_an_app_without_the_alias_its_pipeline_names_says_so_and_keeps_serving(start, summaries):
    pipeline, seen = summaries
    client = start(services={"video_summary": pipeline}, pipeline_llms={SUMMARY_LLM: "assistant"})
    reply = client.post("/v1/pipelines/video-summary", files={"file": ("a.mp4", b"x")})
    assert_envelope(reply, 503)
    assert "video_summary.llm_model: 'assistant'" in reply.json()["error"]["message"] and seen == []
    assert client.post("/v1/chat/completions", json=chat(BLUE)).status_code == 200
