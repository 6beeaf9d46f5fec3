"""What each keyed request used, settled with the gateway's state when its answer ends, however it ends.

An ASGI middleware, added by `make_api` only with a gateway, under Authentication. It puts the
admission's OpenAI x-ratelimit-* headers and the cache's `x-cache` on the answer's first message
(so a stream has them before its first byte, and a refusal has them too), and when the last byte
is out (or the client went away, or the route failed) settles the reservation to the usage the
route reported: the exact token counts of the `Usage` a route already holds (a stream's too: the
LLM routes ask their deployment for the usage chunk and drop it when the client did not ask), the
audio seconds of a transcript, the images of a vision route. A route that reports nothing is
settled to the admission's prompt estimate. Settling is batched, in the background, off the
request's path (serve_app.gateway.service).
"""

from __future__ import annotations

import asyncio
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve_app.gateway.service import Gateway
from serve_app.gateway.state import Settlement
from serve_app.http.admission import ratelimit_headers
from serve_app.http.auth import Caller, current
from serve_app.http.metrics import route_template
from serve_app.protocol import Usage

MASTER = "master"
# An answer that never started: the client left (Serve's 499), or the route failed (500).
_CLIENT_CLOSED, _FAILED = 499, 500
_KEY_REFUSALS = frozenset({"unknown", "blocked", "expired"})  # no key to log them against


def report_tokens(usage: Usage | None, variant: str | None = None) -> None:
    """A route's exact token usage (an LLM's answer, an embedding's prompt tokens); a no-op without a caller."""
    caller = current()
    if caller is None or usage is None:
        return
    caller.usage.prompt_tokens = usage.prompt_tokens
    caller.usage.completion_tokens = usage.completion_tokens
    caller.usage.variant = variant or caller.usage.variant


def report_audio(seconds: float | None) -> None:
    caller = current()
    if caller is not None and seconds is not None:
        caller.usage.audio_seconds = float(seconds)


class Metering:
    def __init__(self, app: ASGIApp, gateway: Gateway):
        self.app = app
        self._gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        caller = current()
        if scope["type"] != "http" or caller is None:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0

        async def metered_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                extra = [(b"x-cache", caller.cache.encode())]
                if caller.admission is not None:
                    extra += ratelimit_headers(caller.admission.window)
                message = {**message, "headers": [*message.get("headers", ()), *extra]}
            await send(message)

        try:
            await self.app(scope, receive, metered_send)
        except asyncio.CancelledError:
            status = status or _CLIENT_CLOSED
            raise
        finally:
            if caller.admission is None or caller.admission.outcome not in _KEY_REFUSALS:
                self._gateway.settle_later(_settlement(scope, caller, status or _FAILED, started))


def _settlement(scope: Scope, caller: Caller, status: int, started: float) -> Settlement:
    request_id = dict(scope["headers"]).get(b"x-request-id")
    served = status < 400
    usage = caller.usage
    prompt = usage.prompt_tokens if usage.prompt_tokens is not None else caller.prompt_estimate
    return Settlement(
        token=MASTER if caller.master or caller.token is None else caller.token,
        key_alias=caller.admission.key_alias if caller.admission else None,
        route=route_template(scope),
        status=status,
        latency_ms=(time.perf_counter() - started) * 1000,
        ended_at=time.time(),
        reservation=caller.reservation,
        model=caller.model,
        variant=usage.variant or caller.model,
        request_id=request_id.decode("latin-1") if request_id else None,
        prompt_tokens=prompt if served else 0,
        completion_tokens=usage.completion_tokens if served else 0,
        audio_seconds=usage.audio_seconds if served else 0.0,
        images=caller.images if served else 0,
        cache_hit=caller.cache == "hit",
    )
