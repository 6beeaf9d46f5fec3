"""Knowledge-base items and their ids survive a restart of the store (embedded Qdrant under the data dir).

The VectorStore is the one process that owns the directory: its replica is replaced by a new one
(a changed ray_actor_options restarts that deployment alone), which closes Qdrant and reopens it.
"""

from __future__ import annotations

import uuid

import httpx
import pytest
import ray

from tests import serve_harness
from tests.images import b64, png

pytestmark = pytest.mark.slow


def _restart_the_store(app: dict) -> None:
    options = serve_harness.deployment_options(app, "VectorStore")["ray_actor_options"]
    options["num_cpus"] = options["num_cpus"] + 0.01


def _store_replica() -> str:
    names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if "default#VectorStore#" in a["name"]]
    assert len(names) == 1, names
    return names[0]


def test_items_survive_a_restart_of_the_store(local_app):
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

    before_replica = _store_replica()
    with serve_harness.reconfigured(_restart_the_store):
        assert _store_replica() != before_replica, "the VectorStore replica was not replaced"
        _assert_kept(local_app, name, before)
    # Restored, which replaces the replica once more.
    _assert_kept(local_app, name, before)
    with httpx.Client(base_url=local_app, timeout=120) as http:
        assert http.delete(f"/v1/collections/{name}").status_code == 200


def _assert_kept(base_url: str, name: str, before: dict) -> None:
    with httpx.Client(base_url=base_url, timeout=120) as http:
        after = {i["id"]: i for i in http.get(f"/v1/collections/{name}/items").json()["data"]}
        assert after == before
        hits = http.post(f"/v1/collections/{name}/search", json={"image": b64(png("circle", "blue"))}).json()
        assert hits["data"][0]["item"]["id"] == "img-1"
