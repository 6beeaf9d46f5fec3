"""OpenAI chat and text completions, over HTTP and for Python callers of the app handle.

A request's `model` may be an LLM, one of its adapters, or an alias; an alias is resolved here
to one target (serve_app.http.traffic), the request is rewritten to name it, and the response says
which target answered (its `model`, and the `x-model-variant` header over HTTP). When the target's
queue is full and the alias names a fallback, the fallback answers instead of a 503, and
`x-model-fallback` names the target that was full.

With a gateway, each answer's exact `Usage` is reported for its key (serve_app.http.metering): a
stream's too, whether or not its client asked for the usage chunk (the deployment is asked for it,
and it is dropped again when the client did not ask).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request, Response
from ray.serve.exceptions import BackPressureError

from serve_app.errors import parse_request, unwrap
from serve_app.http.admission import admitted_chat, admitted_completion
from serve_app.http.answer_cache import cached
from serve_app.http.app import JSON_BODY
from serve_app.http.auth import authorize_model
from serve_app.http.metering import report_tokens
from serve_app.http.routes.base import Backends
from serve_app.http.routing import post
from serve_app.http.sse import sse_response
from serve_app.http.traffic import Route
from serve_app.protocol import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
    StreamOptions,
)

LLMRequest = TypeVar("LLMRequest", ChatCompletionRequest, CompletionRequest)
LLMAnswer = TypeVar("LLMAnswer", ChatCompletion, ChatCompletionChunk, Completion)
T = TypeVar("T")


@dataclass
class Routed:
    """One request's route: the target picked, and whether the fallback answered for it."""

    route: Route
    full: str | None = None  # the target whose queue was full, when the fallback answered

    @property
    def model(self) -> str:
        return self.route.fallback if self.full and self.route.fallback else self.route.model

    def headers(self) -> dict[str, str]:
        headers = {"x-model-variant": self.model}
        if self.full:
            headers["x-model-fallback"] = self.full
        return headers


class LLMRoutes(Backends):
    @post("/v1/chat/completions", response_model=ChatCompletion, dependencies=JSON_BODY)
    async def chat_completions(
        self, body: Annotated[ChatCompletionRequest, Depends(admitted_chat)], request: Request, response: Response
    ) -> Any:
        routed = self._route(body, request)
        if body.stream:
            chunks = self._chat_stream(self._asking_usage(body), routed)
            chunks = self._online.streaming(chunks, body.model, routed.model)
            return _with_headers(await sse_response(_metered_stream(chunks, body.include_usage_in_stream)), routed)
        with self._online.serving(body.model, routed.model):
            answer = await cached(request, body, lambda: _metered(self._chat(body, routed)))
        _with_headers(answer if isinstance(answer, Response) else response, routed)  # a cached answer is a Response
        return answer

    @post("/v1/completions", response_model=Completion, dependencies=JSON_BODY)
    async def completions(
        self, body: Annotated[CompletionRequest, Depends(admitted_completion)], request: Request, response: Response
    ) -> Any:
        routed = self._route(body, request)
        if body.stream:
            chunks = self._completion_stream(self._asking_usage(body), routed)
            chunks = self._online.streaming(chunks, body.model, routed.model)
            return _with_headers(await sse_response(_metered_stream(chunks, body.include_usage_in_stream)), routed)
        with self._online.serving(body.model, routed.model):
            answer = await cached(request, body, lambda: _metered(self._completion(body, routed)))
        _with_headers(answer if isinstance(answer, Response) else response, routed)  # a cached answer is a Response
        return answer

    def _asking_usage(self, body: LLMRequest) -> LLMRequest:
        """The stream request as the deployment gets it: with its usage chunk when the gateway meters it."""
        if self._gateway is None or body.include_usage_in_stream:
            return body
        return body.model_copy(update={"stream_options": StreamOptions(include_usage=True)})

    # The same calls for Python callers of the app handle (serve.get_app_handle), routed by
    # `model` like the HTTP API (aliases included), with the protocol types in and out.

    async def chat(self, request: ChatCompletionRequest | dict) -> ChatCompletion:
        request = parse_request(ChatCompletionRequest, request)
        return await self._chat(request, self._route(request))

    async def chat_stream(self, request: ChatCompletionRequest | dict) -> AsyncIterator[ChatCompletionChunk]:
        request = parse_request(ChatCompletionRequest, request)
        async for chunk in self._chat_stream(request, self._route(request)):
            yield chunk

    async def completion(self, request: CompletionRequest | dict) -> Completion:
        request = parse_request(CompletionRequest, request)
        return await self._completion(request, self._route(request))

    async def completion_stream(self, request: CompletionRequest | dict) -> AsyncIterator[Completion]:
        request = parse_request(CompletionRequest, request)
        async for chunk in self._completion_stream(request, self._route(request)):
            yield chunk

    def _route(self, body: ChatCompletionRequest | CompletionRequest, request: Request | None = None) -> Routed:
        authorize_model(body.model)  # as the request names it: a key may be given an alias, not its targets
        if body.model not in self._traffic:
            return Routed(Route(body.model))
        return Routed(self._traffic.resolve(body.model, body.user or _api_key_identity(request)))

    async def _chat(self, body: ChatCompletionRequest, routed: Routed) -> ChatCompletion:
        return await self._call(routed, body, lambda handle, req: handle.chat.remote(req))

    async def _completion(self, body: CompletionRequest, routed: Routed) -> Completion:
        return await self._call(routed, body, lambda handle, req: handle.completion.remote(req))

    def _chat_stream(self, body: ChatCompletionRequest, routed: Routed) -> AsyncIterator[ChatCompletionChunk]:
        return self._stream(routed, body, lambda handle, req: handle.chat_stream.remote(req))

    def _completion_stream(self, body: CompletionRequest, routed: Routed) -> AsyncIterator[Completion]:
        return self._stream(routed, body, lambda handle, req: handle.completion_stream.remote(req))

    async def _call(self, routed: Routed, body: LLMRequest, call: Callable[[Any, LLMRequest], Awaitable[T]]) -> T:
        try:
            return await call(self._llm(routed.model), _naming(body, routed.model))
        except Exception as exc:
            if not _fall_back(routed, exc):
                raise
        return await call(self._llm(routed.model), _naming(body, routed.model))

    async def _stream(self, routed: Routed, body: LLMRequest, call: Callable[[Any, LLMRequest], Any]) -> AsyncIterator:
        # Back-pressure shows on the first chunk, before anything was sent: only then may the fallback answer.
        chunks = call(self._llm(routed.model, stream=True), _naming(body, routed.model))
        try:
            first = await chunks.__anext__()
        except StopAsyncIteration:
            return
        except Exception as exc:
            if not _fall_back(routed, exc):
                raise
            chunks = call(self._llm(routed.model, stream=True), _naming(body, routed.model))
            first = await chunks.__anext__()
        yield first
        async for chunk in chunks:
            yield chunk


async def _metered(answer: Awaitable[LLMAnswer]) -> LLMAnswer:
    result = await answer
    report_tokens(result.usage, result.model)
    return result


async def _metered_stream(chunks: AsyncIterator[LLMAnswer], client_wants_usage: bool) -> AsyncIterator[LLMAnswer]:
    """The client's chunks; the usage chunk is reported, and passed on only when the client asked for it."""
    async for chunk in chunks:
        if chunk.usage is not None:
            report_tokens(chunk.usage, chunk.model)
            if not client_wants_usage:
                if not chunk.choices:
                    continue
                chunk = chunk.model_copy(update={"usage": None})
        yield chunk


def _fall_back(routed: Routed, exc: Exception) -> bool:
    """Switch `routed` to its fallback when `exc` is the target's full queue and there is one to go to."""
    fallback = routed.route.fallback
    if routed.full or fallback is None or fallback == routed.route.model:
        return False
    if not isinstance(unwrap(exc), BackPressureError):
        return False
    routed.full = routed.route.model
    return True


def _naming(body: LLMRequest, model: str) -> LLMRequest:
    return body if body.model == model else body.model_copy(update={"model": model})


def _api_key_identity(request: Request | None) -> str | None:
    """A stable id for the caller's API key (never the key itself), for sticky routing."""
    if request is None:
        return None
    authorization = request.headers.get("authorization")
    return hashlib.sha256(authorization.encode()).hexdigest() if authorization else None


def _with_headers(response: Any, routed: Routed) -> Any:
    response.headers.update(routed.headers())
    return response
