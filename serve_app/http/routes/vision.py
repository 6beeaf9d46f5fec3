"""Detections, embeddings (OpenAI shape) and the image-RAG pipeline, over HTTP and for app-handle callers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, Request

from serve_app.config import IMAGE_RAG_LLM
from serve_app.errors import InvalidRequest, RequestT, UnsupportedMediaType, parse_request
from serve_app.http.admission import admitted_embedding
from serve_app.http.answer_cache import cached
from serve_app.http.app import IMAGE_API, JSON_BODY
from serve_app.http.media_types import media_type
from serve_app.http.metering import report_tokens
from serve_app.http.openapi import image_body as image_body_schema
from serve_app.http.routes.base import Backends
from serve_app.http.routing import post
from serve_app.http.sse import sse_response
from serve_app.protocol import (
    DetectionRequest,
    DetectionResponse,
    EmbeddingRequest,
    EmbeddingResponse,
    ImageRAGEvent,
    ImageRAGRequest,
    ImageRAGResponse,
    Usage,
)

# Multipart form fields that may repeat (OpenAI style `classes[]`) and become lists.
_LIST_FIELDS = {"classes"}


async def image_body(request: Request, model_type: type[RequestT]) -> RequestT:
    """The request from a multipart upload (file field `image`) or a JSON body (base64 `image`)."""
    declared = media_type(request.headers)
    if declared == "application/json":
        try:
            body = await request.json()
        except ValueError:
            raise InvalidRequest("We could not parse the JSON body of your request.", code="invalid_json") from None
        return parse_request(model_type, body)
    if declared == "multipart/form-data":
        form = await request.form()
        fields: dict[str, Any] = {}
        for key in form:
            name = key.removesuffix("[]")
            values = [await v.read() if hasattr(v, "read") else v for v in form.getlist(key)]
            fields[name] = values if name in _LIST_FIELDS else values[-1]
        if "image" not in fields or isinstance(fields["image"], str):
            raise InvalidRequest("upload the image as a file in the form field 'image'", param="image")
        return parse_request(model_type, fields)
    raise UnsupportedMediaType(
        f"Content-Type must be multipart/form-data or application/json, got '{declared or 'none'}'."
    )


class VisionRoutes(Backends):
    @post(
        "/v1/detections",
        response_model=DetectionResponse,
        dependencies=IMAGE_API,
        openapi_extra=image_body_schema(DetectionRequest),
    )
    async def detections(self, request: Request) -> Any:
        body = await image_body(request, DetectionRequest)
        with self._online.serving(body.model):  # detection batch lines to this model wait for it
            return await self.detect(body)

    @post("/v1/embeddings", response_model=EmbeddingResponse, dependencies=JSON_BODY)
    async def embeddings(self, body: Annotated[EmbeddingRequest, Depends(admitted_embedding)], request: Request) -> Any:
        with self._online.serving(body.model):
            return await cached(request, body, lambda: self.embed(body))

    @post(
        "/v1/pipelines/image-rag",
        response_model=ImageRAGResponse,
        dependencies=IMAGE_API,
        openapi_extra=image_body_schema(ImageRAGRequest),
    )
    async def image_rag(self, request: Request) -> Any:
        body = await image_body(request, ImageRAGRequest)
        if body.stream:
            return await sse_response(self.image_rag_stream(body))
        return await self.image_rag_run(body)

    # The same calls for Python callers of the app handle, routed by `model` like the HTTP API.

    async def detect(self, request: DetectionRequest | dict) -> DetectionResponse:
        request = parse_request(DetectionRequest, request)
        return await self._model("detector", request.model).detect.remote(request)

    async def embed(self, request: EmbeddingRequest | dict) -> EmbeddingResponse:
        request = parse_request(EmbeddingRequest, request)
        result = await self._model("embedding", request.model).embed.remote(request)
        report_tokens(Usage.of(result.usage.prompt_tokens, 0), result.model)
        return result

    async def image_rag_run(self, request: ImageRAGRequest | dict) -> ImageRAGResponse:
        request = self._pipeline_llm(parse_request(ImageRAGRequest, request), IMAGE_RAG_LLM)
        result = await self._service("image_rag").run.remote(request)
        report_tokens(result.usage, result.model)
        return result

    async def image_rag_stream(self, request: ImageRAGRequest | dict) -> AsyncIterator[ImageRAGEvent]:
        request = self._pipeline_llm(parse_request(ImageRAGRequest, request), IMAGE_RAG_LLM)
        async for event in self._service("image_rag", stream=True).stream.remote(request):
            report_tokens(getattr(event, "usage", None))
            yield event
