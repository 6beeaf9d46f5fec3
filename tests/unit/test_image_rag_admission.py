"""The image-RAG stream sends nothing until the LLM has accepted the answer request.

So a full LLM queue refuses the whole request before the HTTP response starts (a plain 429/503
with Retry-After) instead of a 200 stream that breaks after its context event. Handles are
test doubles here (unit test); the real path is covered by the vision e2e tests.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from ray.serve.exceptions import BackPressureError

from pipelines.image_rag import RAGHandles, RAGModels, image_rag_events
from serve_app.common.images import ImageLimits
from serve_app.config import ImageRAGConfig
from serve_app.protocol import ImageRAGRequest
from tests.fakes import FakeHandle, FakeLLM
from tests.images import png


def _handles(llm: FakeHandle) -> RAGHandles:
    return RAGHandles(
        detector=FakeHandle.of(detect=lambda _request, _decoded: SimpleNamespace(detections=[])),
        embedder=FakeHandle.of(embed_inputs=lambda _images: [(np.zeros(4, dtype=np.float32), None)]),
        store=FakeHandle.of(search_vectors=lambda *_args, **_kwargs: [[]]),
        llm_stream=llm.options(stream=True),
    )


def _events(llm: FakeHandle):
    return image_rag_events(
        _handles(llm),
        RAGModels(detector="d", embedder="e", llm="m"),
        ImageRAGConfig(),
        ImageLimits(max_bytes=1 << 20, max_pixels=1 << 20),
        ImageRAGRequest(image=png(), collection="kb"),
    )


async def test_a_full_llm_queue_refuses_before_the_first_event():
    full = BackPressureError(num_queued_requests=1, max_queued_requests=1, status_code=429, retry_after_s=2)
    llm = FakeHandle(FakeLLM(), refusal=full)
    events = _events(llm)
    with pytest.raises(BackPressureError):
        await anext(events)


async def test_an_accepted_answer_streams_context_then_deltas_then_done():
    kinds = [event.object async for event in _events(FakeHandle(FakeLLM("hello")))]
    assert kinds == ["pipeline.image_rag.context", "pipeline.image_rag.delta", "pipeline.image_rag.done"]
