"""Vision over HTTP: the openai SDK's embeddings call, detections, the knowledge base, image RAG (+SSE)."""

from __future__ import annotations

import json
import uuid

import httpx
import numpy as np
import pytest

from tests.images import SHAPES, b64, png

CLIP, MINILM, YOLO = "tiny-clip", "all-minilm-l6-v2", "tiny-yolov8n"


@pytest.fixture()
def http(local_app):
    with httpx.Client(base_url=local_app, timeout=120) as client:
        yield client


@pytest.fixture()
def collection(http):
    """A fresh collection name, deleted afterwards."""
    names = []

    def make(model: str) -> str:
        name = f"e2e-{uuid.uuid4().hex[:8]}"
        reply = http.post("/v1/collections", json={"name": name, "model": model})
        assert reply.status_code == 200, reply.text
        names.append(name)
        return name

    yield make
    for name in names:
        http.delete(f"/v1/collections/{name}")


def test_models_lists_detector_and_embedders(http):
    cards = {m["id"]: m for m in http.get("/v1/models").json()["data"]}
    assert cards[YOLO]["kind"] == "detector"
    assert (cards[CLIP]["kind"], cards[CLIP]["embedding_dimension"]) == ("embedding", 32)
    assert (cards[MINILM]["kind"], cards[MINILM]["embedding_dimension"]) == ("embedding", 384)


@pytest.mark.parametrize(("model", "dimension"), [(CLIP, 32), (MINILM, 384)])
def test_sdk_embeddings_float_and_base64(openai_client, model, dimension):
    texts = ["a red square", "a blue circle", "the quarterly budget"]
    as_float = openai_client.embeddings.create(model=model, input=texts, encoding_format="float")
    # Without encoding_format the SDK asks for base64 and decodes it to floats itself.
    as_b64 = openai_client.embeddings.create(model=model, input=texts)
    assert as_float.model == model and [d.index for d in as_float.data] == [0, 1, 2]
    assert as_float.usage.prompt_tokens > 0
    for f, b in zip(as_float.data, as_b64.data, strict=True):
        assert len(f.embedding) == dimension
        assert np.linalg.norm(f.embedding) == pytest.approx(1.0, abs=1e-5)
        np.testing.assert_allclose(f.embedding, b.embedding, atol=1e-6)
    single = openai_client.embeddings.create(model=model, input="a red square", dimensions=dimension)
    np.testing.assert_allclose(single.data[0].embedding, as_float.data[0].embedding, atol=1e-5)


def test_sdk_image_embeddings_extension(openai_client):
    reply = openai_client.embeddings.create(model=CLIP, input=[{"image": b64(png())}, "a red square"])
    assert [len(d.embedding) for d in reply.data] == [32, 32]
    assert np.linalg.norm(reply.data[0].embedding) == pytest.approx(1.0, abs=1e-5)


def test_image_embeddings_extension(http):
    reply = http.post("/v1/embeddings", json={"model": CLIP, "input": ["a red square", {"image": b64(png())}]})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert len(body["data"]) == 2 and all(len(d["embedding"]) == 32 for d in body["data"])
    assert body["batch_size"] >= 1


def test_detections_multipart_and_json_agree_and_are_inside_the_image(http):
    image = png("circle", "green", size=(300, 200))
    form = http.post(
        "/v1/detections", files={"image": ("c.png", image, "image/png")}, data={"model": YOLO, "max_det": "10"}
    )
    as_json = http.post("/v1/detections", json={"model": YOLO, "image": b64(image), "max_det": 10})
    assert form.status_code == as_json.status_code == 200, form.text
    body = form.json()
    assert (body["width"], body["height"]) == (300, 200)
    assert 0 < len(body["detections"]) <= 10
    assert body["detections"] == as_json.json()["detections"]
    for d in body["detections"]:
        box = d["box"]
        assert 0 <= box["x1"] <= box["x2"] <= 300 and 0 <= box["y1"] <= box["y2"] <= 200
        assert 0.25 <= d["score"] <= 1 and isinstance(d["label"], str)


def test_detection_options_filter_classes_and_threshold(http):
    image = b64(png())
    only_person = http.post("/v1/detections", json={"model": YOLO, "image": image, "classes": ["person"]}).json()
    assert only_person["detections"] and {d["label"] for d in only_person["detections"]} == {"person"}
    by_id = http.post("/v1/detections", json={"model": YOLO, "image": image, "classes": [0], "max_det": 3}).json()
    assert len(by_id["detections"]) <= 3 and {d["class_id"] for d in by_id["detections"]} == {0}
    assert http.post("/v1/detections", json={"model": YOLO, "image": image, "conf": 0.99}).json()["detections"] == []


def test_knowledge_base_text_items_lifecycle_and_top_hit(http, collection):
    name = collection(MINILM)
    items = [
        {"id": "kb-1", "text": "Ray Serve scales deployments with autoscaling.", "metadata": {"topic": "serving"}},
        {"id": "kb-2", "text": "A recipe for lemon cake with butter.", "metadata": {"topic": "food"}},
        {"id": "kb-3", "text": "Qdrant stores vectors for similarity search.", "metadata": {"topic": "search"}},
    ]
    added = http.post(f"/v1/collections/{name}/items", json={"items": items})
    assert added.status_code == 200, added.text
    assert http.get(f"/v1/collections/{name}").json()["items_count"] == 3
    listed = http.get(f"/v1/collections/{name}/items").json()["data"]
    assert {i["id"] for i in listed} == {"kb-1", "kb-2", "kb-3"}
    for item in items:
        hits = http.post(f"/v1/collections/{name}/search", json={"query": item["text"], "top_k": 3}).json()["data"]
        assert hits[0]["item"]["id"] == item["id"] and hits[0]["item"]["metadata"] == item["metadata"]
        assert hits[0]["score"] == pytest.approx(1.0, abs=1e-4)
    filtered = http.post(
        f"/v1/collections/{name}/search", json={"query": "vectors", "filter": {"topic": "food"}}
    ).json()["data"]
    assert [h["item"]["id"] for h in filtered] == ["kb-2"]
    assert http.get(f"/v1/collections/{name}/items/kb-2").json()["text"].startswith("A recipe")
    assert http.delete(f"/v1/collections/{name}/items/kb-2").json()["deleted"] is True
    assert http.get(f"/v1/collections/{name}/items/kb-2").status_code == 404
    assert name in {c["name"] for c in http.get("/v1/collections").json()["data"]}


def test_knowledge_base_image_items_with_detections_and_image_search(http, collection):
    name = collection(CLIP)
    images = {f"{shape}-{color}": png(shape, color) for shape in SHAPES for color in ("red", "blue")}
    items = [{"id": key, "image": b64(data), "detect": True, "metadata": {"key": key}} for key, data in images.items()]
    items.append({"id": "caption", "text": "a red square"})
    assert http.post(f"/v1/collections/{name}/items", json={"items": items}).status_code == 200
    stored = http.get(f"/v1/collections/{name}/items/circle-blue").json()
    assert stored["kind"] == "image" and stored["detections"]
    for key, data in images.items():
        hits = http.post(f"/v1/collections/{name}/search", json={"image": b64(data), "top_k": 2}).json()["data"]
        assert hits[0]["item"]["id"] == key
    by_text = http.post(f"/v1/collections/{name}/search", json={"query": "a red square", "top_k": 1}).json()
    assert by_text["data"][0]["item"]["id"] == "caption"


def test_image_rag_returns_retrieved_items_and_answer(http, collection):
    name = collection(CLIP)
    images = {shape: png(shape, "green") for shape in SHAPES}
    http.post(
        f"/v1/collections/{name}/items",
        json={"items": [{"id": s, "image": b64(d), "metadata": {"shape": s}} for s, d in images.items()]},
    )
    reply = http.post(
        "/v1/pipelines/image-rag",
        files={"image": ("t.png", images["triangle"], "image/png")},
        data={"collection": name, "question": "What shape is it?", "top_k": "2", "crops": "true", "seed": "1"},
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["object"] == "pipeline.image_rag"
    assert body["retrieved"][0]["item"]["id"] == "triangle"
    assert {r["item"]["id"] for r in body["retrieved"]} <= set(SHAPES)
    assert body["detections"] and isinstance(body["answer"], str)
    assert set(body["timings"]) == {"detect_ms", "embed_ms", "retrieve_ms", "generate_ms", "total_ms"}


def test_image_rag_streams_context_then_answer_in_order(http, collection):
    name = collection(CLIP)
    image = png("square", "red")
    http.post(f"/v1/collections/{name}/items", json={"items": [{"id": "sq", "image": b64(image)}]})
    payload = {"image": b64(image), "collection": name, "stream": True, "max_tokens": 8, "seed": 3}
    with http.stream("POST", "/v1/pipelines/image-rag", json=payload) as reply:
        assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/event-stream")
        lines = [line.removeprefix("data: ") for line in reply.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    events = [json.loads(line) for line in lines[:-1]]
    kinds = [e["object"] for e in events]
    assert kinds[0] == "pipeline.image_rag.context" and kinds[-1] == "pipeline.image_rag.done"
    assert set(kinds[1:-1]) <= {"pipeline.image_rag.delta"}
    assert events[0]["retrieved"][0]["item"]["id"] == "sq" and events[0]["detections"]
    assert "".join(e["delta"] for e in events[1:-1]) == events[-1]["answer"]
    assert len({e["id"] for e in events}) == 1
