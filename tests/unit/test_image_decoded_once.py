"""An image is decoded once per request: the image RAG pipeline decodes the upload and hands the
pixels to the detector and the embedder, which then decode nothing (fake handles, no Ray, no model)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from deployments import detector as detector_module
from deployments.detector import Detector
from pipelines import image_rag as image_rag_module
from pipelines.image_rag import ImageRAG, RAGModels
from serve_app.common.images import ImageLimits
from serve_app.common.model_registry import ModelRegistry
from serve_app.config import ImageRAGConfig
from serve_app.protocol import DetectionRequest, ImageRAGRequest
from tests.fakes import FakeHandle, FakeLLM
from tests.images import png

LIMITS = ImageLimits(max_bytes=1 << 20, max_pixels=1 << 20)


async def test_the_image_rag_pipeline_decodes_once_and_hands_the_pixels_on(monkeypatch):
    decoded, detector_got, embedder_got = [], [], []
    original = image_rag_module.decode_image
    monkeypatch.setattr(image_rag_module, "decode_image", lambda *a: decoded.append(1) or original(*a))

    def detect(request, pixels):
        detector_got.append(pixels)
        return SimpleNamespace(detections=[])

    def embed(images):
        embedder_got.extend(images)
        return [(np.zeros(4, dtype=np.float32), 1) for _ in images]

    models = ModelRegistry(
        {
            "detector": {"d": FakeHandle.of(detect=detect)},
            "embedding": {"e": FakeHandle.of(embed_inputs=embed)},
            "llm": {"m": FakeHandle(FakeLLM("an answer"))},
        }
    )
    store = FakeHandle.of(search_vectors=lambda *_args, **_kwargs: [[]])
    pipeline = ImageRAG.func_or_class(models, store, RAGModels("d", "e", "m"), ImageRAGConfig(), LIMITS)
    await pipeline.run(ImageRAGRequest(image=png(size=(40, 30)), collection="kb"))
    assert decoded == [1]
    (pixels,) = detector_got
    assert isinstance(pixels, Image.Image) and pixels.size == (40, 30)
    assert [image.size for image in embedder_got] == [(40, 30)]


async def test_the_detector_given_the_pixels_does_not_decode_the_bytes(monkeypatch):
    monkeypatch.setattr(detector_module, "decode_image", lambda *a: pytest.fail("decoded a second time"))
    batched = []

    async def batch(job):
        batched.append(job[0])
        return [], 1

    replica = SimpleNamespace(_names={0: "thing"}, _limits=LIMITS, _batch=batch, served_name="yolo")
    pixels = Image.new("RGB", (40, 30))
    request = DetectionRequest(model="yolo", image=png(size=(40, 30)))
    reply = await Detector.func_or_class.detect(replica, request, pixels)
    assert batched == [pixels] and (reply.width, reply.height) == (40, 30)
