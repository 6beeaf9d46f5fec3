"""Vision deployments from Python (notebooks): batching, equality with unbatched calls, the store, the pipeline."""

from __future__ import annotations

import asyncio
import uuid

import numpy as np
import pytest
from ray import serve

from serve_app.errors import InvalidRequest, NotFound, unwrap
from serve_app.protocol import (
    CollectionInfo,
    DetectionRequest,
    DetectionResponse,
    EmbeddingRequest,
    EmbeddingResponse,
    ImageRAGResponse,
    SearchResponse,
)
from tests.conftest import LOCAL_MODEL
from tests.images import SHAPES, b64, png

pytestmark = pytest.mark.usefixtures("local_app")

APP = "default"
CLIP = "tiny-clip"
MINILM = "all-minilm-l6-v2"
YOLO = "tiny-yolov8n"


def handle(name: str):
    return serve.get_deployment_handle(name, app_name=APP)


async def _one_by_one(call, requests):
    return [await call(r) for r in requests]


@pytest.mark.parametrize(("deployment", "model"), [("ClipEmbedder", CLIP), ("TextEmbedder", MINILM)])
async def test_concurrent_embeddings_share_batches_and_equal_unbatched(deployment, model):
    embedder = handle(deployment)
    requests = [EmbeddingRequest(model=model, input=f"sentence number {i} about a red square") for i in range(12)]
    alone = await _one_by_one(embedder.embed.remote, requests)
    # One at a time they run alone, unless another caller's request shares their batch (a loaded CI machine).
    assert min(r.batch_size for r in alone) == 1
    together = await asyncio.gather(*(embedder.embed.remote(r) for r in requests))
    assert all(isinstance(r, EmbeddingResponse) for r in together)
    assert max(r.batch_size for r in together) > 1
    for a, b in zip(alone, together, strict=True):
        np.testing.assert_allclose(a.data[0].embedding, b.data[0].embedding, atol=1e-5)
    stats = await embedder.stats.remote()
    assert stats["max_batch_size"] > 1 and stats["inputs"] >= 24


async def test_concurrent_image_embeddings_share_batches_and_equal_unbatched():
    clip = handle("ClipEmbedder")
    requests = [
        EmbeddingRequest(model=CLIP, input=[{"image": b64(png(shape, color, size=(96 + 8 * i, 64)))}])
        for i, (shape, color) in enumerate((s, c) for s in SHAPES for c in ("red", "green", "blue"))
    ]
    alone = await _one_by_one(clip.embed.remote, requests)
    together = await asyncio.gather(*(clip.embed.remote(r) for r in requests))
    assert max(r.batch_size for r in together) > 1
    for a, b in zip(alone, together, strict=True):
        vector = np.array(b.data[0].embedding)
        assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)
        np.testing.assert_allclose(a.data[0].embedding, vector, atol=1e-5)


async def test_concurrent_detections_share_batches_and_equal_unbatched():
    detector = handle("Detector")
    sizes = [(320, 240), (200, 300), (640, 480), (128, 128), (300, 100), (256, 192)]
    requests = [DetectionRequest(model=YOLO, image=png(size=size), max_det=25) for size in sizes]
    alone = await _one_by_one(detector.detect.remote, requests)
    together = await asyncio.gather(*(detector.detect.remote(r) for r in requests))
    assert max(r.batch_size for r in together) > 1
    for size, a, b in zip(sizes, alone, together, strict=True):
        assert isinstance(b, DetectionResponse) and (b.width, b.height) == size
        assert [d.class_id for d in a.detections] == [d.class_id for d in b.detections]
        boxes_a = [[d.box.x1, d.box.y1, d.box.x2, d.box.y2] for d in a.detections]
        boxes_b = [[d.box.x1, d.box.y1, d.box.x2, d.box.y2] for d in b.detections]
        np.testing.assert_allclose(boxes_a, boxes_b, atol=1e-2)


async def test_vector_store_handle_round_trip_and_typed_errors():
    store = handle("VectorStore")
    name = f"handles-{uuid.uuid4().hex[:8]}"
    info = await store.create_collection.remote({"name": name, "model": MINILM})
    assert isinstance(info, CollectionInfo) and info.dimension == 384 and info.distance == "Cosine"
    await store.add_items.remote(
        name,
        {"items": [{"id": "cat", "text": "a cat sleeps on the sofa"}, {"id": "gpu", "text": "GPU memory budgets"}]},
    )
    found = await store.search.remote(name, {"query": "GPU memory budgets", "top_k": 2})
    assert isinstance(found, SearchResponse) and found.data[0].item.id == "gpu"
    with pytest.raises(Exception) as info:
        await store.add_items.remote(name, {"items": [{"id": "bad", "vector": [0.1] * 5}]})
    assert isinstance(unwrap(info.value), InvalidRequest)
    with pytest.raises(Exception) as info:
        await store.search.remote("no-such-collection", {"query": "x"})
    assert isinstance(unwrap(info.value), NotFound)
    await store.delete_collection.remote(name)


async def test_image_rag_handle_returns_the_items_it_retrieved_and_an_answer():
    store = handle("VectorStore")
    name = f"rag-{uuid.uuid4().hex[:8]}"
    await store.create_collection.remote({"name": name, "model": CLIP})
    shapes = {shape: png(shape, "blue") for shape in SHAPES}
    await store.add_items.remote(
        name, {"items": [{"id": s, "image": data, "metadata": {"shape": s}} for s, data in shapes.items()]}
    )
    reply = await handle("ImageRAG").run.remote(
        {"image": shapes["circle"], "collection": name, "question": "Which shape?", "top_k": 2, "crops": True}
    )
    assert isinstance(reply, ImageRAGResponse) and reply.model == LOCAL_MODEL
    assert reply.retrieved[0].item.id == "circle" and reply.retrieved[0].source == "image"
    assert {r.item.id for r in reply.retrieved} <= set(SHAPES) and len(reply.retrieved) == 2
    assert isinstance(reply.answer, str) and reply.usage.completion_tokens >= 1
    assert reply.timings.total_ms >= reply.timings.generate_ms > 0
    await store.delete_collection.remote(name)
