"""/health, /ready and /v1/models: what an operator's probe and a client's model list see."""

from __future__ import annotations

import asyncio

from serve_app.errors import ServiceUnavailable
from serve_app.protocol import ModelCard
from tests.fakes import FakeHandle
from tests.http.support import ASR, DETECTOR, LLM


def test_health_is_ok_without_asking_any_model(client, backends):
    assert client.get("/health").json() == {"status": "ok"}
    assert not [h.calls for by_name in backends["models"].values() for h in by_name.values() if h.calls]


def test_ready_when_every_deployment_is_healthy_and_answers(client):
    reply = client.get("/ready")
    assert (reply.status_code, reply.json()) == (200, {"status": "ready"})


def test_not_ready_names_a_model_that_does_not_answer(serve_ingress, backends):
    def card():
        raise ServiceUnavailable("loading")

    models = {**backends["models"], "detector": {DETECTOR: FakeHandle.of("Detector", card=card)}}
    reply = serve_ingress(models).get("/ready")
    assert reply.status_code == 503
    assert reply.json() == {
        "status": "not_ready",
        "problems": [f"model {DETECTOR} (Detector): RayTaskError(ServiceUnavailable)"],
    }


def test_not_ready_at_once_while_a_deployment_is_not_healthy_no_model_asked(serve_ingress, backends):
    """While the app starts, pollers' checks must not wait on replicas still loading (CPU they need)."""
    asked = []

    def card():
        asked.append("detector")
        return ModelCard(id=DETECTOR, kind="detector", engine="fake", version="v1")

    models = {**backends["models"], "detector": {DETECTOR: FakeHandle.of("Detector", card=card)}}
    reply = serve_ingress(models, unhealthy={"ASR": "UPDATING"}).get("/ready")
    assert (reply.status_code, reply.json()) == (503, {"status": "not_ready", "problems": ["deployment ASR: UPDATING"]})
    assert asked == []


def test_not_ready_when_a_deployment_fails_while_its_probe_waits_for_the_replacement(serve_ingress, backends):
    """The Detector's replica fails its health check and is replaced while /ready's probe waits: the new
    replica answers the probe, but the outage in between is seen in Serve's status, read again meanwhile."""
    seen = iter(["HEALTHY", "UNHEALTHY", "UPDATING"])

    async def card_from_the_new_replica():
        await asyncio.sleep(1.2)
        return ModelCard(id=DETECTOR, kind="detector", engine="fake", version="v1")

    models = {**backends["models"], "detector": {DETECTOR: FakeHandle.of("Detector", card=card_from_the_new_replica)}}
    client = serve_ingress(models)
    statuses = dict(client.replica._statuses())
    client.replica._statuses = lambda: statuses | {"Detector": next(seen, "HEALTHY")}
    reply = client.get("/ready")
    assert reply.status_code == 503
    assert reply.json()["problems"] == ["deployment Detector: UNHEALTHY"]


def test_models_lists_every_served_id_aliases_included_and_a_silent_one_as_unavailable(serve_ingress, backends):
    async def silent():
        await asyncio.sleep(30)

    models = {**backends["models"], "detector": {DETECTOR: FakeHandle.of("Detector", card=silent)}}
    listed = serve_ingress(models, probe_timeout_s=0.05).get("/v1/models").json()
    assert listed["object"] == "list"
    cards = {card["id"]: card for card in listed["data"]}
    assert list(cards) == [LLM, ASR, "whisper-1", DETECTOR]
    assert cards["whisper-1"]["kind"] == "asr" and cards["whisper-1"]["engine"] == "fake"
    assert cards[DETECTOR]["engine"] == "unavailable"
