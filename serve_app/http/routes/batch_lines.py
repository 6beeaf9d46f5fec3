"""A batch's lines coming back through the app handle, from the runner's Ray Data tasks.

Each line meets the same routing, aliases, adapters and validation as its online request, after
online requests to its model have had their turn (serve_app.http.online_load); it is billed to the
key that made the batch, and with `metadata.cache: warm` its answer is stored in the response cache.

`batch_line` answers one line (chat, completions: the engine batches them continuously, so a line
each keeps it full). `batch_block` answers a block of lines in one call: embeddings per model, through
the embedder's `embed_many` (an embedding is a few milliseconds of compute, and two handle calls per
line would cost more than the model), and a collection's items in one indexing call. Other media
lines (transcriptions, detections, pipelines) go one per call, through serve_app.http.routes.batch_media.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel

from serve_app.config import BatchConfig
from serve_app.errors import APIError, InvalidRequest, ServiceUnavailable, as_api_error, parse_request
from serve_app.gateway.state import Settlement
from serve_app.http.answer_cache import warm
from serve_app.http.online_load import OnlineLoad
from serve_app.http.routes.batch_media import BatchMedia, LineAnswer, refused
from serve_app.protocol import ChatCompletionRequest, CompletionRequest, EmbeddingRequest, EmbeddingResponse

REQUEST_TYPES: dict[str, type[BaseModel]] = {
    "/v1/chat/completions": ChatCompletionRequest,
    "/v1/completions": CompletionRequest,
    "/v1/embeddings": EmbeddingRequest,
}


class BatchLines(BatchMedia):
    _batch: BatchConfig | None
    _online: OnlineLoad

    def _batch_config(self) -> BatchConfig:
        if self._batch is None:
            raise ServiceUnavailable("The Files and Batch APIs are not configured in this application (`batch:`).")
        return self._batch

    async def batch_line(
        self, endpoint: str, body: dict[str, Any], line_owner: str | None = None, warm_cache: bool = False
    ) -> dict[str, Any] | str:
        """One line's request, answered as its online route would (the answer's dict, or a text answer's
        string), or its APIError."""
        if body.get("stream"):
            raise InvalidRequest("A batch line cannot stream; leave `stream` out.", param="stream")
        model = str(body.get("model"))
        await self._online_first(model)
        if endpoint not in REQUEST_TYPES:  # a media line (serve_app.http.routes.batch_media)
            return await self.media_line(endpoint, body, line_owner)
        started = time.monotonic()
        # Parsed once: the app-handle methods take the parsed request as it is, and the cache keys by it.
        request: Any = parse_request(REQUEST_TYPES[endpoint], body)
        if endpoint == "/v1/chat/completions":
            answer: Any = await self.chat(request)  # type: ignore[attr-defined]  # LLMRoutes, on the same Ingress
        elif endpoint == "/v1/completions":
            answer = await self.completion(request)  # type: ignore[attr-defined]
        else:
            answer = await self.embed(request)  # type: ignore[attr-defined]  # VisionRoutes
        await self._after_line(endpoint, request, answer, started, line_owner, warm_cache)
        return answer.model_dump(mode="json")

    async def batch_block(
        self, endpoint: str, bodies: list[dict[str, Any]], line_owner: str | None = None, warm_cache: bool = False
    ) -> list[LineAnswer]:
        """A block of embedding lines (one handle call per model) or of one collection's items (one
        indexing call): each line's (status, body)."""
        if endpoint != "/v1/embeddings":
            return await self.media_items(endpoint, bodies, line_owner)
        answers: list[LineAnswer | None] = [None] * len(bodies)
        by_model: dict[str, list[tuple[int, EmbeddingRequest]]] = {}
        for i, body in enumerate(bodies):
            try:
                request = parse_request(EmbeddingRequest, body)
            except APIError as exc:
                answers[i] = refused(exc)
                continue
            by_model.setdefault(request.model, []).append((i, request))
        for model, lines in by_model.items():
            await self._online_first(model)
            started = time.monotonic()
            try:
                results = await self._model("embedding", model).embed_many.remote([r for _, r in lines])
            except Exception as exc:
                results = [as_api_error(exc)] * len(lines)
            for (i, request), result in zip(lines, results, strict=True):
                if isinstance(result, EmbeddingResponse):
                    await self._after_line("/v1/embeddings", request, result, started, line_owner, warm_cache)
                    answers[i] = (200, result.model_dump(mode="json"))
                else:
                    answers[i] = refused(result)
        return [a for a in answers if a is not None]  # every line was answered above

    async def _online_first(self, model: str) -> None:
        config = self._batch_config()
        if config.online_first:
            await self._online.wait_quiet(model, config.max_online_wait_s)

    async def _after_line(
        self, endpoint: str, request: BaseModel, answer: Any, started: float, owner: str | None, warm_cache: bool
    ) -> None:
        if warm_cache:
            await warm(self._gateway, endpoint, request, answer)
        if owner is not None and self._gateway is not None:
            # Billed to the key that created the batch, line by line, as its online requests are.
            self._gateway.settle_later(
                Settlement(
                    token=owner,
                    route=endpoint,
                    status=200,
                    latency_ms=(time.monotonic() - started) * 1000,
                    ended_at=time.time(),
                    model=answer.model,
                    prompt_tokens=answer.usage.prompt_tokens,
                    completion_tokens=getattr(answer.usage, "completion_tokens", 0) or 0,
                )
            )
