"""Limits and budgets: every keyed request is admitted (or refused) by the state before any model runs.

An ASGI middleware under KeyAuthentication. For a key's request it reads the JSON body (already
bounded by BodySizeLimit), reserves prompt + max_tokens (x n) at the state in one call that also
checks the key, and answers refusals itself: 401 unknown/blocked/expired, 403 a model the key may
not use, 429 `rate_limit_exceeded` (RPM, TPM, parallel) with Retry-After, 429 `insufficient_quota`.
Admitted answers carry OpenAI's x-ratelimit-* headers on their first message, so streams have them
before their first byte. When the answer ends, however it ends (a stream cut off by its client
too), the reservation is settled to what was used and the request logged. The master key is
logged, never limited.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve_app.errors import (
    APIError,
    AuthenticationFailed,
    PermissionDenied,
    QuotaExceeded,
    RateLimited,
    TokensRateLimited,
)
from serve_app.gateway.state import Admission, Demand, Settlement, Window
from serve_app.http.errors import send_error
from serve_app.http.key_auth import GatewayRequest, app_path
from serve_app.http.media_types import media_type
from serve_app.http.metrics import route_template
from serve_app.http.usage_capture import UsageCapture

COMPLETION_PATHS = frozenset({"/v1/chat/completions", "/v1/completions"})
TEXT_PATHS = COMPLETION_PATHS | {"/v1/embeddings"}
IMAGE_PATHS = frozenset({"/v1/detections", "/v1/pipelines/image-rag"})
MASTER = "master"


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _text_chars(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return sum(_text_chars(v) for v in value)
    if isinstance(value, dict):
        return sum(_text_chars(v) for k, v in value.items() if k in ("content", "text"))
    return 0


def prompt_estimate(path: str, body: dict[str, Any] | None) -> int:
    """About four characters a token, plus a few per chat message: an estimate the settlement corrects."""
    if body is None or path not in TEXT_PATHS:
        return 0
    messages = body.get("messages")
    if isinstance(messages, list):
        return math.ceil(_text_chars(messages) / 4) + 4 * len(messages)
    return math.ceil(_text_chars(body.get("prompt", body.get("input"))) / 4)


def reserved_tokens(path: str, body: dict[str, Any] | None, default_max_tokens: int) -> int:
    prompt = prompt_estimate(path, body)
    if path not in COMPLETION_PATHS or body is None:
        return prompt
    most = _count(body.get("max_completion_tokens")) or _count(body.get("max_tokens")) or default_max_tokens
    return prompt + most * (_count(body.get("n")) or 1)


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


async def read_body(receive: Receive) -> tuple[list[Message], bytes | None]:
    """Every message of the body, and the body (None when the client left or BodySizeLimit cut it off)."""
    messages, chunks = [], []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return messages, None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return messages, b"".join(chunks)


def replaying(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replay() -> Message:
        return pending.pop(0) if pending else await receive()

    return replay


class KeyLimits:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        caller: GatewayRequest | None = scope.get("gateway")
        if caller is None:
            await self.app(scope, receive, send)
            return
        gateway = scope["app"].state.gateway
        started = time.perf_counter()
        path = app_path(scope)
        headers = dict(scope["headers"])
        if scope["method"] == "POST" and media_type({"content-type": headers.get(b"content-type", b"").decode()}) == (
            "application/json"
        ):
            messages, raw = await read_body(receive)
            receive = replaying(messages, receive)
            if raw is None:  # gone, or over the size limit: BodySizeLimit (outside) answers
                await self.app(scope, receive, send)
                return
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
            caller.body = body if isinstance(body, dict) else None
        model = caller.body.get("model") if caller.body and isinstance(caller.body.get("model"), str) else None
        images = 1 if path in IMAGE_PATHS else 0
        reservation = None
        window_headers: list[tuple[bytes, bytes]] = []
        if not caller.master:
            demand = Demand(
                token=caller.token,
                model=model,
                tokens=reserved_tokens(path, caller.body, gateway.config.default_max_tokens),
                images=images,
                now=time.time(),
                reservation=uuid.uuid4().hex,
                reservation_ttl_s=gateway.config.reservation_ttl_s,
            )
            try:
                admission: Admission = await gateway.state("admit", demand)
            except APIError as exc:
                await send_error(send, exc)
                return
            caller.admission = admission
            window_headers = ratelimit_headers(admission.window)
            error = refusal(admission)
            if error is not None:
                await send_error(send, error, window_headers)
                if admission.outcome not in ("unknown", "blocked", "expired"):
                    gateway.settle_later(self._settlement(scope, caller, model, error.status, started, None))
                return
            reservation = demand.reservation
        capture = UsageCapture(prompt_estimate(path, caller.body))

        async def accounting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                capture.start(message)
                message = {**message, "headers": [*message.get("headers", ()), *window_headers]}
            elif message["type"] == "http.response.body":
                capture.body(message.get("body", b""))
            await send(message)

        # What the log says when no answer started: the client left (Serve's 499), or the route failed (500).
        unanswered = 500
        try:
            await self.app(scope, receive, accounting_send)
        except asyncio.CancelledError:
            unanswered = 499
            raise
        finally:
            capture.finish()
            settlement = self._settlement(scope, caller, model, capture.status or unanswered, started, reservation)
            settlement.model = model or capture.model
            settlement.variant = capture.variant or capture.model
            settlement.prompt_tokens = capture.prompt
            settlement.completion_tokens = capture.completion_tokens
            settlement.audio_seconds = capture.audio_seconds
            settlement.images = images if capture.status < 400 else 0
            settlement.cache_hit = caller.cache == "hit"
            gateway.settle_later(settlement)

    @staticmethod
    def _settlement(
        scope: Scope, caller: GatewayRequest, model: str | None, status: int, started: float, reservation: str | None
    ) -> Settlement:
        request_id = dict(scope["headers"]).get(b"x-request-id")
        return Settlement(
            token=MASTER if caller.master else caller.token,
            key_alias=caller.admission.key_alias if caller.admission else None,
            route=route_template(scope),
            status=status,
            latency_ms=(time.perf_counter() - started) * 1000,
            ended_at=time.time(),
            reservation=reservation,
            model=model or caller.model,
            request_id=request_id.decode("latin-1") if request_id else None,
        )
