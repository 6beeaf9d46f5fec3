"""The response cache at the HTTP edge, below the limits: it only ever answers admitted requests.

Every gateway answer says what the cache did in `x-cache`: `hit` (served from the cache, charged
no tokens), `miss` (cacheable, computed, stored when it succeeded) or `bypass` (not cacheable: a
stream, a sampled request, a route or key that did not opt in, `x-cache-control: no-cache`).
Opt in per route (`gateway.cache.routes`), per key (`metadata.cache: true`) or per request
(`x-cache-control: cache`).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve_app.gateway.cache import cache_key, deterministic
from serve_app.http.key_auth import GatewayRequest, app_path


def _cache_control(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-cache-control":
            return value.decode("latin-1").strip().lower()
    return ""


def _x_cache(message: Message, status: str) -> Message:
    return {**message, "headers": [*message.get("headers", ()), (b"x-cache", status.encode())]}


class ResponseCache:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        caller: GatewayRequest | None = scope.get("gateway")
        if caller is None:
            await self.app(scope, receive, send)
            return
        gateway = scope["app"].state.gateway
        cache = gateway.cache
        control = _cache_control(scope)
        metadata = caller.admission.metadata if caller.admission else {}
        opt_in = control == "cache" or metadata.get("cache") is True
        body = caller.body
        path = app_path(scope)
        key = None
        if (
            cache is not None
            and control != "no-cache"
            and body is not None
            and isinstance(body.get("model"), str)
            and cache.wanted(path, opt_in)
            and deterministic(path, body)
        ):
            try:
                version = await gateway.model_version(body["model"])
            except Exception:
                version = None  # the model is unknown or down: the route answers that, uncached
            if version is not None:
                key = cache_key(path, version, body)
        if key is None:

            async def bypass_send(message: Message) -> None:
                await send(_x_cache(message, "bypass") if message["type"] == "http.response.start" else message)

            await self.app(scope, receive, bypass_send)
            return
        hit = cache.get(key)
        if hit is not None:
            caller.cache = "hit"
            content_type, cached = hit
            headers = [(b"content-type", content_type), (b"content-length", str(len(cached)).encode())]
            await send(_x_cache({"type": "http.response.start", "status": 200, "headers": headers}, "hit"))
            await send({"type": "http.response.body", "body": cached})
            return
        caller.cache = "miss"
        status, content_type, chunks = 0, b"", []

        async def storing_send(message: Message) -> None:
            nonlocal status, content_type
            if message["type"] == "http.response.start":
                status = message["status"]
                content_type = dict(message.get("headers", ())).get(b"content-type", b"")
                message = _x_cache(message, "miss")
            elif message["type"] == "http.response.body" and status == 200:
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False) and content_type.startswith(b"application/json"):
                    cache.put(key, content_type, b"".join(chunks))
            await send(message)

        await self.app(scope, receive, storing_send)
