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
from serve_app.config import ImageRAGConfig
from serve_app.images import ImageLimits
from serve_app.protocol import ImageRAGRequest
from tests.images import png


async def _value(value):
    return value


class _Method:
    def __init__(self, result):
        self._result = result

    def remote(self, *args, **kwargs):
        return self._result() if callable(self._result) else _value(self._result)


class _LLM:
    def __init__(self, stream):
        self.chat_stream = _Method(stream)

    def options(self, stream: bool):
        return self


def _handles(llm_stream) -> RAGHandles:
    return RAGHandles(
        detector=SimpleNamespace(detect=_Method(SimpleNamespace(detections=[]))),
        embedder=SimpleNamespace(embed_inputs=_Method([(np.zeros(4, dtype=np.float32), None)])),
        store=SimpleNamespace(search_vectors=_Method([[]])),
        llm=_LLM(llm_stream),
    )


def _events(llm_stream):
    return image_rag_events(
        _handles(llm_stream),
        RAGModels(detector="d", embedder="e", llm="m"),
        ImageRAGConfig(),
        ImageLimits(max_bytes=1 << 20, max_pixels=1 << 20),
        ImageRAGRequest(image=png(), collection="kb"),
    )


async def test_a_full_llm_queue_refuses_before_the_first_event():
    async def refused():
        raise BackPressureError(num_queued_requests=1, max_queued_requests=1, status_code=429, retry_after_s=2)
        yield  # an async generator, like a streaming handle call

    events = _events(refused)
    with pytest.raises(BackPressureError):
        await anext(events)


async def test_an_accepted_answer_streams_context_then_deltas_then_done():
    async def accepted():
        for text, finish in (("", None), ("hello", None), (None, "stop")):
            delta = SimpleNamespace(content=text)
            yield SimpleNamespace(usage=None, choices=[SimpleNamespace(delta=delta, finish_reason=finish)])

    kinds = [event.object async for event in _events(accepted)]
    assert kinds == ["pipeline.image_rag.context", "pipeline.image_rag.delta", "pipeline.image_rag.done"]
