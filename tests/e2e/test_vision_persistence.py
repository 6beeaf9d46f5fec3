"""Knowledge-base items and their ids survive a restart of the app (embedded Qdrant under the data dir)."""

from __future__ import annotations

import uuid

import httpx
from ray import serve

from tests import serve_harness
from tests.images import b64, png


def test_items_survive_an_app_restart(local_app):
    name = f"persist-{uuid.uuid4().hex[:8]}"
    items = [
        {"id": "note-1", "text": "the quarterly budget is due on Friday", "metadata": {"n": 1}},
        {"text": "a red square on a white page"},  # id assigned by the server
        {"id": "img-1", "image": b64(png("circle", "blue")), "metadata": {"n": 3}},
    ]
    with httpx.Client(base_url=local_app, timeout=120) as http:
        assert http.post("/v1/collections", json={"name": name, "model": "tiny-clip"}).status_code == 200
        added = http.post(f"/v1/collections/{name}/items", json={"items": items}).json()["data"]
        before = {i["id"]: i for i in http.get(f"/v1/collections/{name}/items").json()["data"]}
    assert set(before) == {a["id"] for a in added} and "note-1" in before

    # A real restart: the app and every replica go away (the VectorStore closes Qdrant), then come back.
    serve.delete("default")
    serve_harness.deploy_apps([serve_harness.application("local.yaml")])

    with httpx.Client(base_url=local_app, timeout=120) as http:
        after = {i["id"]: i for i in http.get(f"/v1/collections/{name}/items").json()["data"]}
        assert after == before
        hits = http.post(f"/v1/collections/{name}/search", json={"image": b64(png("circle", "blue"))}).json()
        assert hits["data"][0]["item"]["id"] == "img-1"
        assert http.delete(f"/v1/collections/{name}").status_code == 200
