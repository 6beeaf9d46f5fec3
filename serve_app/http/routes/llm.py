"""OpenAI chat and text completions, over HTTP and for Python callers of the app handle."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from serve_app.errors import parse_request
from serve_app.http.app import JSON_API, api
from serve_app.http.routes.base import Backends
from serve_app.http.sse import sse_response
from serve_app.protocol import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
)


class LLMRoutes(Backends):
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
        return await self._model("llm", request.model).chat.remote(request)

    async def chat_stream(self, request: ChatCompletionRequest | dict) -> AsyncIterator[ChatCompletionChunk]:
        request = parse_request(ChatCompletionRequest, request)
        async for chunk in self._model("llm", request.model).options(stream=True).chat_stream.remote(request):
            yield chunk

    async def completion(self, request: CompletionRequest | dict) -> Completion:
        request = parse_request(CompletionRequest, request)
        return await self._model("llm", request.model).completion.remote(request)

    async def completion_stream(self, request: CompletionRequest | dict) -> AsyncIterator[Completion]:
        request = parse_request(CompletionRequest, request)
        async for chunk in self._model("llm", request.model).options(stream=True).completion_stream.remote(request):
            yield chunk
