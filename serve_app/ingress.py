"""The HTTP ingress: the OpenAI API in FastAPI, routed to model deployments by handle.

It knows request shapes and status codes, never models: every model call goes
through a DeploymentHandle, and every error leaves as one OpenAI envelope.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from ray import serve
from ray.serve.handle import DeploymentHandle
from starlette.exceptions import HTTPException as StarletteHTTPException

from serve_app.config import IngressConfig
from serve_app.errors import (
    APIError,
    AuthenticationFailed,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
    as_api_error,
    parse_request,
)
from serve_app.protocol import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
    ErrorResponse,
    ModelCard,
    ModelList,
)
from serve_app.sse import sse_response

logger = logging.getLogger("ray.serve")

api = FastAPI(
    title="multimodel-serve",
    description="OpenAI-compatible API over Ray Serve model deployments.",
    responses={400: {"model": ErrorResponse}, 404: {"model": ErrorResponse}},
)


def error_response(error: APIError) -> JSONResponse:
    return JSONResponse(error.envelope().model_dump(), status_code=error.status)


@api.exception_handler(APIError)
async def _api_error(_: Request, exc: APIError) -> JSONResponse:
    # Errors raised in a model replica arrive as RayTaskError(<APIError subclass>).
    return error_response(as_api_error(exc))


@api.exception_handler(RequestValidationError)
async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    # OpenAI answers schema errors with 400, not FastAPI's 422.
    first = exc.errors()[0]
    if first.get("type") == "json_invalid":
        return error_response(
            InvalidRequest(
                "We could not parse the JSON body of your request: it is not valid JSON.",
                code="invalid_json",
            )
        )
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    param = ".".join(loc) or None
    where = f" (at '{param}')" if param else ""
    return error_response(InvalidRequest(f"{first.get('msg', 'invalid value')}{where}", param=param))


@api.exception_handler(StarletteHTTPException)
async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    error = InvalidRequest(str(exc.detail), code="not_found" if exc.status_code == 404 else None)
    envelope = error.envelope().model_dump()
    return JSONResponse(envelope, status_code=exc.status_code, headers=getattr(exc, "headers", None))


@api.exception_handler(Exception)
async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    error = as_api_error(exc)
    if error.status >= 500:
        logger.exception("request failed", exc_info=exc)
    return error_response(error)


async def json_body(request: Request) -> None:
    """Reject non-JSON and oversize bodies before FastAPI parses them."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise UnsupportedMediaType(f"Content-Type must be application/json, got '{media_type or 'none'}'.")
    limit = request.app.state.limits.max_request_bytes
    length = request.headers.get("content-length", "")
    # A chunked body declares no length: measure it (Starlette caches it for FastAPI's parser).
    size = int(length) if length.isdigit() else len(await request.body())
    if size > limit:
        raise PayloadTooLarge(f"Request body is {size} bytes; the limit is {limit} bytes.")


async def api_key(request: Request) -> None:
    expected = request.app.state.api_key
    if expected is None:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not secrets.compare_digest(given.strip().encode(), expected.encode()):
        raise AuthenticationFailed("Incorrect or missing API key: send `Authorization: Bearer <key>`.")


JSON_API = [Depends(api_key), Depends(json_body)]


def _required_api_key(env_name: str | None) -> str | None:
    if env_name is None:
        return None
    key = os.environ.get(env_name)
    if not key:
        raise RuntimeError(
            f"ingress.api_key_env is {env_name!r} but that variable is empty or unset in the ingress replica; "
            "export it before `serve run`, or set it in the application's runtime_env.env_vars"
        )
    return key


def _unhealthy_deployments() -> list[str]:
    app_name = serve.get_replica_context().app_name
    app = serve.status().applications.get(app_name)
    if app is None:
        return [f"application {app_name} not found"]
    return [
        f"deployment {name}: {status.status}" for name, status in app.deployments.items() if status.status != "HEALTHY"
    ]


@serve.deployment(name="Ingress")
@serve.ingress(api)
class Ingress:
    def __init__(self, llms: dict[str, DeploymentHandle], config: IngressConfig):
        self._llms = llms
        self._config = config
        api.state.limits = config
        api.state.api_key = _required_api_key(config.api_key_env)

    def _llm(self, model: str) -> DeploymentHandle:
        handle = self._llms.get(model)
        if handle is None:
            raise NotFound(f"The model '{model}' does not exist", param="model")
        return handle

    @api.get("/health")
    async def health(self) -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/ready")
    async def ready(self) -> JSONResponse:
        problems = await self._readiness_problems()
        if problems:
            return JSONResponse({"status": "not_ready", "problems": problems}, status_code=503)
        return JSONResponse({"status": "ready"})

    @api.get("/v1/models", response_model=ModelList, dependencies=[Depends(api_key)])
    async def models(self) -> ModelList:
        cards = await asyncio.gather(*(self._card(name, h) for name, h in self._llms.items()))
        return ModelList(data=list(cards))

    @api.post("/v1/chat/completions", response_model=ChatCompletion, dependencies=JSON_API)
    async def chat_completions(self, body: ChatCompletionRequest) -> Any:
        if body.stream:
            return await sse_response(self.chat_stream(body))
        return await self.chat(body)

    @api.post("/v1/completions", response_model=Completion, dependencies=JSON_API)
    async def completions(self, body: CompletionRequest) -> Any:
        if body.stream:
            return await sse_response(self.completion_stream(body))
        return await self.completion(body)

    # The same calls for Python callers of the app handle (serve.get_app_handle),
    # routed by `model` like the HTTP API, with the protocol types in and out.

    async def chat(self, request: ChatCompletionRequest | dict) -> ChatCompletion:
        request = parse_request(ChatCompletionRequest, request)
        return await self._llm(request.model).chat.remote(request)

    async def chat_stream(self, request: ChatCompletionRequest | dict) -> AsyncIterator[ChatCompletionChunk]:
        request = parse_request(ChatCompletionRequest, request)
        async for chunk in self._llm(request.model).options(stream=True).chat_stream.remote(request):
            yield chunk

    async def completion(self, request: CompletionRequest | dict) -> Completion:
        request = parse_request(CompletionRequest, request)
        return await self._llm(request.model).completion.remote(request)

    async def completion_stream(self, request: CompletionRequest | dict) -> AsyncIterator[Completion]:
        request = parse_request(CompletionRequest, request)
        async for chunk in self._llm(request.model).options(stream=True).completion_stream.remote(request):
            yield chunk

    async def _probe(self, handle: DeploymentHandle) -> ModelCard:
        return await asyncio.wait_for(handle.card.remote(), self._config.probe_timeout_s)

    async def _card(self, name: str, handle: DeploymentHandle) -> ModelCard:
        try:
            return await self._probe(handle)
        except Exception:
            return ModelCard(id=name, kind="llm", engine="unavailable", version="unknown")

    async def _readiness_problems(self) -> list[str]:
        problems = await asyncio.to_thread(_unhealthy_deployments)
        for name, handle in self._llms.items():
            try:
                await self._probe(handle)
            except Exception as exc:
                problems.append(f"model {name}: {type(exc).__name__}")
        return problems
