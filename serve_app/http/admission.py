"""Limits and budgets: every keyed request is admitted (or refused) by the gateway's state before any model runs.

A route-level step, as FastAPI dependencies: the metered JSON routes take their body through
`admitted_chat` / `admitted_completion` / `admitted_embedding`, which reserve prompt + max_tokens (x n)
from the body FastAPI parsed (once) and return it; every other authenticated route lists
`admit_request` (or `admit_image`, one image) among its dependencies. One call to the state checks
the key (unknown, blocked, expired: 401), its models (403), its RPM, TPM and parallel requests
(429 `rate_limit_exceeded`, Retry-After) and its budget (429 `insufficient_quota`).
serve_app.http.metering puts OpenAI's x-ratelimit-* headers on the answer and settles the
reservation to what the route reported it used. The operator's and the admin's requests are never
limited; without a gateway every step here is a no-op.
"""

from __future__ import annotations

import math
import time
import uuid
from typing import Any

from fastapi import Request

from serve_app.errors import (
    APIError,
    AuthenticationFailed,
    PermissionDenied,
    QuotaExceeded,
    RateLimited,
    TokensRateLimited,
)
from serve_app.gateway.service import Gateway
from serve_app.gateway.state import Admission, Demand, Window
from serve_app.http.auth import Caller, current
from serve_app.protocol import ChatCompletionRequest, CompletionRequest, EmbeddingRequest

_CHARS_PER_TOKEN = 4
_TOKENS_PER_MESSAGE = 4


def _text_tokens(values: list[Any]) -> int:
    """About four characters a token; a prompt of token ids is its length: an estimate the settlement corrects."""
    tokens = 0
    for value in values:
        if isinstance(value, str):
            tokens += math.ceil(len(value) / _CHARS_PER_TOKEN)
        elif isinstance(value, list):
            tokens += len(value)
    return tokens


def prompt_estimate(body: ChatCompletionRequest | CompletionRequest | EmbeddingRequest) -> int:
    if isinstance(body, ChatCompletionRequest):
        chars = sum(len(message.text()) for message in body.messages)
        return math.ceil(chars / _CHARS_PER_TOKEN) + _TOKENS_PER_MESSAGE * len(body.messages)
    if isinstance(body, CompletionRequest):
        return _text_tokens(body.prompts)
    return _text_tokens([i for i in body.inputs if isinstance(i, str)])


def reserved_tokens(body: ChatCompletionRequest | CompletionRequest | EmbeddingRequest, default_max: int) -> int:
    """What the admission holds back: the prompt, and every token the request may generate."""
    prompt = prompt_estimate(body)
    if isinstance(body, EmbeddingRequest):
        return prompt
    prompts = len(body.prompts) if isinstance(body, CompletionRequest) else 1
    return prompt + (body.max_tokens or default_max) * body.n * prompts


def reset(seconds: float) -> str:
    return f"{max(seconds, 0.001):.3g}s"


def ratelimit_headers(window: Window) -> list[tuple[bytes, bytes]]:
    headers = []
    for kind, limit, remaining in (
        ("requests", window.limit_requests, window.remaining_requests),
        ("tokens", window.limit_tokens, window.remaining_tokens),
    ):
        if limit is not None:
            headers += [
                (f"x-ratelimit-limit-{kind}".encode(), str(limit).encode()),
                (f"x-ratelimit-remaining-{kind}".encode(), str(remaining if remaining is not None else limit).encode()),
                (f"x-ratelimit-reset-{kind}".encode(), reset(window.reset_s).encode()),
            ]
    return headers


def refusal(admission: Admission) -> APIError | None:
    outcome = admission.outcome
    if outcome == "admitted":
        return None
    if outcome in ("unknown", "blocked", "expired"):
        why = {"unknown": "Incorrect API key", "blocked": "This API key is blocked", "expired": "This API key expired"}
        return AuthenticationFailed(f"{why[outcome]}: send `Authorization: Bearer <key>` with a valid key.")
    if outcome == "model":
        return PermissionDenied(f"This key may not use this model; its models: {admission.models}", param="model")
    if outcome == "quota":
        return QuotaExceeded("This key's budget is spent; ask an admin to raise its max_budget.")
    window = admission.window
    if outcome == "tokens":
        return TokensRateLimited(
            f"Rate limit reached for tokens per minute: limit {window.limit_tokens}, "
            f"remaining {window.remaining_tokens}; try again in {reset(window.reset_s)}.",
            retry_after_s=admission.retry_after_s,
        )
    what = "parallel requests" if outcome == "parallel" else f"requests per minute: limit {window.limit_requests}"
    return RateLimited(f"Rate limit reached for {what}; try again shortly.", retry_after_s=admission.retry_after_s)


async def admit(request: Request, *, model: str | None = None, tokens: int = 0, images: int = 0) -> None:
    """Admit the request being served for its key, or raise the refusal (metering adds the window's headers)."""
    caller: Caller | None = current()
    gateway: Gateway | None = getattr(request.app.state, "gateway", None)
    if caller is None or gateway is None:
        return
    caller.images = images
    caller.model = caller.model or model
    if caller.master:
        return
    demand = Demand(
        token=caller.token or "",  # a key's caller always has one: only master callers lack it
        model=model,
        tokens=tokens,
        images=images,
        now=time.time(),
        reservation=uuid.uuid4().hex,
        reservation_ttl_s=gateway.config.reservation_ttl_s,
    )
    caller.admission = await gateway.admit(demand)
    error = refusal(caller.admission)
    if error is not None:
        raise error
    caller.reservation = demand.reservation


async def admit_request(request: Request) -> None:
    await admit(request)


async def admit_image(request: Request) -> None:
    await admit(request, images=1)


async def _admit_text(request: Request, body: ChatCompletionRequest | CompletionRequest | EmbeddingRequest) -> None:
    caller = current()
    if caller is None:
        return
    caller.prompt_estimate = prompt_estimate(body)
    gateway: Gateway | None = getattr(request.app.state, "gateway", None)
    default_max = gateway.config.default_max_tokens if gateway is not None else 0
    await admit(request, model=body.model, tokens=reserved_tokens(body, default_max))


async def admitted_chat(request: Request, body: ChatCompletionRequest) -> ChatCompletionRequest:
    await _admit_text(request, body)
    return body


async def admitted_completion(request: Request, body: CompletionRequest) -> CompletionRequest:
    await _admit_text(request, body)
    return body


async def admitted_embedding(request: Request, body: EmbeddingRequest) -> EmbeddingRequest:
    await _admit_text(request, body)
    return body
