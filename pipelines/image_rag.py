"""image -> YOLO detections -> CLIP embedding (image and crops) -> Qdrant top-k -> LLM answer.

Plain async code over deployment handles; `ImageRAG` is the thin deployment around it.

    rag = serve.get_deployment_handle("ImageRAG", app_name="default")
    reply = await rag.run.remote({"image": png_bytes, "question": "What is this?", "collection": "kb"})
    async for event in rag.options(stream=True).stream.remote({...}): ...   # context, deltas, done
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import TypeVar

from ray import serve
from ray.serve.handle import DeploymentHandle

from serve_app.common import metrics
from serve_app.common.images import ImageLimits, decode_image, image_bytes
from serve_app.common.model_registry import ModelRegistry
from serve_app.config import ImageRAGConfig
from serve_app.errors import InvalidRequest, parse_request
from serve_app.protocol import (
    ChatCompletionRequest,
    Detection,
    DetectionRequest,
    ImageRAGContextEvent,
    ImageRAGDeltaEvent,
    ImageRAGDoneEvent,
    ImageRAGEvent,
    ImageRAGRequest,
    ImageRAGResponse,
    ImageRAGTimings,
    RetrievedItem,
)

# Retrieved texts are cut to this many characters in the prompt, so top_k items fit a small context.
SNIPPET_CHARS = 300
PIPELINE = "image_rag"  # its label in the pipeline metrics

T = TypeVar("T")


@dataclass(frozen=True)
class RAGHandles:
    detector: DeploymentHandle
    embedder: DeploymentHandle
    store: DeploymentHandle
    llm_stream: DeploymentHandle  # the answering LLM, with options(stream=True)


@dataclass(frozen=True)
class RAGModels:
    detector: str
    embedder: str
    llm: str


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 2)


async def _timed(call: Awaitable[T]) -> tuple[T, float]:
    """The call's result and its milliseconds, for calls that run side by side."""
    started = time.perf_counter()
    return await call, _ms(started)


def crop_boxes(image, detections: list[Detection]) -> list:
    """One crop per detection, in the original image's pixels (empty boxes skipped by the caller)."""
    crops = []
    for d in detections:
        box = (int(d.box.x1), int(d.box.y1), int(round(d.box.x2)), int(round(d.box.y2)))
        crops.append(image.crop(box) if box[2] > box[0] and box[3] > box[1] else None)
    return crops


def merge_hits(per_query: list[tuple[str, list]], top_k: int) -> list[RetrievedItem]:
    """Best score per item over the whole image and its crops, highest first."""
    best: dict[str, RetrievedItem] = {}
    for source, hits in per_query:
        for hit in hits:
            if hit.item.id not in best or hit.score > best[hit.item.id].score:
                best[hit.item.id] = RetrievedItem(item=hit.item, score=hit.score, source=source)
    return sorted(best.values(), key=lambda r: r.score, reverse=True)[:top_k]


def describe_detections(detections: list[Detection]) -> str:
    if not detections:
        return "no objects"
    counts: dict[str, list[float]] = {}
    for d in detections:
        counts.setdefault(d.label, []).append(d.score)
    return ", ".join(f"{len(s)} {label} (best score {max(s):.2f})" for label, s in counts.items())


def describe_retrieved(retrieved: list[RetrievedItem]) -> str:
    if not retrieved:
        return "(nothing found)"
    lines = []
    for r in retrieved:
        what = (r.item.text or f"[{r.item.kind} item {r.item.id}]")[:SNIPPET_CHARS]
        meta = f" {r.item.metadata}" if r.item.metadata else ""
        lines.append(f"- ({r.score:.2f}) {what}{meta}")
    return "\n".join(lines)


def build_prompt(template: str, question: str, detections: list[Detection], retrieved: list[RetrievedItem]) -> str:
    return template.format(
        detections=describe_detections(detections), retrieved=describe_retrieved(retrieved), question=question
    )


async def image_rag_events(
    handles: RAGHandles,
    models: RAGModels,
    config: ImageRAGConfig,
    limits: ImageLimits,
    request: ImageRAGRequest,
) -> AsyncIterator[ImageRAGEvent]:
    """Context event first (detections, retrieved items), then answer deltas, then a done event."""
    started = time.perf_counter()
    collection = request.collection or config.default_collection
    if collection is None:
        raise InvalidRequest(
            "no collection given and no vision.image_rag.default_collection configured", param="collection"
        )
    # Decode once here: validates the upload before any model runs, and gives the pixels for crops.
    raw = image_bytes(request.image, limits)
    image = decode_image(raw, limits)
    timings = ImageRAGTimings()

    # Detection and the whole-image embedding are independent: run them side by side, each timed
    # as its own stage (embed_ms: the whole image, plus the crops after detection).
    detect = handles.detector.detect.remote(
        DetectionRequest(model=models.detector, image=raw, conf=request.conf, max_det=request.max_det), image
    )
    whole = handles.embedder.embed_inputs.remote([image])
    (detected, timings.detect_ms), (whole_vectors, timings.embed_ms) = await asyncio.gather(
        _timed(detect), _timed(whole)
    )
    queries = [("image", whole_vectors[0][0].tolist())]
    if request.crops and detected.detections:
        t = time.perf_counter()
        crops = [(f"crop:{i}", c) for i, c in enumerate(crop_boxes(image, detected.detections)) if c is not None]
        vectors = await handles.embedder.embed_inputs.remote([c for _, c in crops])
        queries += [(source, v.tolist()) for (source, _), (v, _) in zip(crops, vectors, strict=True)]
        timings.embed_ms += _ms(t)

    t = time.perf_counter()
    top_k = request.top_k or config.top_k
    hits = await handles.store.search_vectors.remote(collection, [v for _, v in queries], top_k, model=models.embedder)
    retrieved = merge_hits([(source, h) for (source, _), h in zip(queries, hits, strict=True)], top_k)
    timings.retrieve_ms = _ms(t)

    context = ImageRAGContextEvent(
        id="",
        width=image.width,
        height=image.height,
        detections=detected.detections,
        retrieved=retrieved,
        timings=timings.model_copy(),
    )

    t = time.perf_counter()
    prompt = build_prompt(
        config.prompt_template, request.question or config.default_question, detected.detections, retrieved
    )
    chat = ChatCompletionRequest(
        model=request.model or models.llm,
        messages=[{"role": "user", "content": prompt}],
        max_tokens=request.max_tokens or config.max_tokens,
        seed=request.seed,
        stream=True,
        stream_options={"include_usage": True},
    )
    # The answer stream is opened before the context event goes out: the LLM's first chunk comes once
    # it has accepted the request, so a full LLM queue (or a bad model) refuses the whole request
    # before any event, i.e. as a plain HTTP 429/503 with Retry-After rather than a broken stream.
    answer_stream = handles.llm_stream.chat_stream.remote(chat)
    first = await anext(answer_stream)
    yield context
    answer, finish_reason, usage = [], None, None
    async for chunk in _prepend(first, answer_stream):
        usage = chunk.usage or usage
        for choice in chunk.choices:
            finish_reason = choice.finish_reason or finish_reason
            if choice.delta.content:
                answer.append(choice.delta.content)
                yield ImageRAGDeltaEvent(id="", delta=choice.delta.content)
    timings.generate_ms = _ms(t)
    timings.total_ms = _ms(started)
    stage_ms = {
        "detect": timings.detect_ms,
        "embed": timings.embed_ms,
        "search": timings.retrieve_ms,
        "answer": timings.generate_ms,
    }
    metrics.observe_stages(PIPELINE, {stage: ms / 1000 for stage, ms in stage_ms.items()})
    yield ImageRAGDoneEvent(id="", answer="".join(answer), finish_reason=finish_reason, usage=usage, timings=timings)


async def _prepend(first: T, rest: AsyncIterator[T]) -> AsyncIterator[T]:
    yield first
    async for item in rest:
        yield item


@serve.deployment(name="ImageRAG")
class ImageRAG:
    """The pipeline as a deployment over the registry's detector, CLIP embedder and LLMs, and the store."""

    def __init__(
        self,
        models: ModelRegistry,
        store: DeploymentHandle,
        names: RAGModels,
        config: ImageRAGConfig,
        limits: ImageLimits,
    ):
        self._registry = models
        # .llm_stream answers the configured model; a request naming another LLM or adapter gets its own.
        self._handles = RAGHandles(
            detector=models.get("detector", names.detector),
            embedder=models.get("embedding", names.embedder),
            store=store,
            llm_stream=models.llm(names.llm, stream=True),
        )
        self._models = names
        self._config = config
        self._limits = limits

    async def stream(self, request: ImageRAGRequest | dict) -> AsyncIterator[ImageRAGEvent]:
        with metrics.pipeline_run(PIPELINE):
            async for event in self._events(request):
                yield event

    async def run(self, request: ImageRAGRequest | dict) -> ImageRAGResponse:
        with metrics.pipeline_run(PIPELINE):
            request = parse_request(ImageRAGRequest, request)
            events = [event async for event in self._events(request)]
        context, done = events[0], events[-1]
        return ImageRAGResponse(
            id=done.id,
            model=request.model or self._models.llm,
            width=context.width,
            height=context.height,
            detections=context.detections,
            retrieved=context.retrieved,
            answer=done.answer,
            finish_reason=done.finish_reason,
            usage=done.usage,
            timings=done.timings,
        )

    async def _events(self, request: ImageRAGRequest | dict) -> AsyncIterator[ImageRAGEvent]:
        request = parse_request(ImageRAGRequest, request)
        run_id = f"imgrag-{time.time_ns():x}"
        handles = self._handles
        if request.model:
            handles = dataclasses.replace(handles, llm_stream=self._registry.llm(request.model, stream=True))
        async for event in image_rag_events(handles, self._models, self._config, self._limits, request):
            yield event.model_copy(update={"id": run_id})
