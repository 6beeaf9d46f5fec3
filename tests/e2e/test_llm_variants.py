"""Many LLMs on the session app (configs/local.yaml): two versions, two adapters, one alias.

Over HTTP with the official openai SDK and httpx, and through the app handle as a notebook would.
At temperature 0 the tiny model is deterministic, so "answered by its own weights" is checked as
equality with what that model or adapter gives alone.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest
from ray import serve

from tests import serve_harness
from tests.envelopes import assert_envelope

BASE, V2, ADAPTERS = "tiny-qwen2", "tiny-qwen2-v2", ("tiny-qwen2-lora-a", "tiny-qwen2-lora-b")


def greedy(model: str, content: str = "Priya walked to the station.") -> dict:
    return {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": 12, "temperature": 0}


async def answer(http: httpx.AsyncClient, model: str, **extra) -> httpx.Response:
    reply = await http.post("/v1/chat/completions", json={**greedy(model), **extra})
    assert reply.status_code == 200, reply.text
    return reply


@pytest.fixture()
async def http(local_app):
    async with httpx.AsyncClient(base_url=local_app, timeout=120) as client:
        yield client


async def test_each_adapter_answers_as_itself_and_unlike_the_base(http):
    replies = {model: await answer(http, model) for model in (BASE, *ADAPTERS)}
    texts = {model: r.json()["choices"][0]["message"]["content"] for model, r in replies.items()}
    assert len(set(texts.values())) == 3, texts
    assert {m: r.json()["model"] for m, r in replies.items()} == {m: m for m in replies}


async def test_concurrent_requests_for_the_base_and_two_adapters_each_get_their_own_weights(http):
    models = [BASE, *ADAPTERS]
    alone = {m: (await answer(http, m)).json()["choices"][0]["message"]["content"] for m in models}
    mixed = await asyncio.gather(*(answer(http, m) for m in models * 3))
    assert [r.json()["choices"][0]["message"]["content"] for r in mixed] == [alone[m] for m in models * 3]


async def test_the_second_version_is_its_own_model(http):
    reply = await answer(http, V2)
    assert reply.json()["model"] == V2
    assert reply.headers["x-model-variant"] == V2


def test_models_lists_both_versions_the_adapters_and_the_alias(openai_client):
    cards = {card.id: card for card in openai_client.models.list().data}
    assert {BASE, V2, *ADAPTERS, "assistant"} <= set(cards)
    assert all(cards[a].model_extra["parent"] == BASE for a in ADAPTERS)
    assert cards["assistant"].model_extra["targets"] == [
        {"model": BASE, "weight": 90.0},
        {"model": V2, "weight": 10.0},
    ]


def test_the_alias_answers_from_a_target_and_keeps_a_user_on_it(openai_client):
    answered = set()
    for _ in range(8):
        raw = openai_client.chat.completions.with_raw_response.create(**greedy("assistant"), user="ana")
        reply = raw.parse()
        assert raw.headers["x-model-variant"] == reply.model
        answered.add(reply.model)
    assert len(answered) == 1 and answered <= {BASE, V2}


async def test_the_app_handle_routes_aliases_and_adapters(local_app):
    app = serve.get_app_handle("default")
    via_alias = await app.chat.remote({**greedy("assistant"), "user": "notebook"})
    assert via_alias.model in {BASE, V2}
    via_adapter = await app.chat.remote(greedy(ADAPTERS[0]))
    assert via_adapter.model == ADAPTERS[0]


async def test_an_unknown_adapter_is_a_404_and_the_rest_keeps_serving(http):
    reply = await http.post("/v1/chat/completions", json=greedy("tiny-qwen2-lora-z"))
    assert_envelope(reply, 404, param="model", code="model_not_found")
    await answer(http, ADAPTERS[1])


def _ingress_actors() -> set[str]:
    from ray.serve.context import _get_global_client
    from ray.serve.schema import ServeInstanceDetails

    details = ServeInstanceDetails(**_get_global_client().get_serve_details())
    return {r.actor_id for r in details.applications["default"].deployments["Ingress"].replicas}


def _weights(base: float, v2: float):
    def edit(app: dict) -> None:
        aliases = serve_harness.deployment_options(app, "Ingress")["user_config"]["aliases"]
        aliases[0]["targets"] = [{"model": BASE, "weight": base}, {"model": V2, "weight": v2}]

    return edit


async def test_new_weights_apply_live_without_restarting_the_ingress(http):
    before = _ingress_actors()
    with serve_harness.reconfigured(_weights(0, 100)):
        replies = await asyncio.gather(*(answer(http, "assistant", user=f"u{i}", max_tokens=2) for i in range(12)))
        assert {r.json()["model"] for r in replies} == {V2}
        assert _ingress_actors() == before
    assert _ingress_actors() == before
