"""Authentication for the gateway: who is calling, from `Authorization: Bearer <key>`.

An ASGI middleware, on only when the app has a gateway (`app.state.gateway`). It answers 401
itself for a missing or malformed key, and otherwise hands the layers below a `GatewayRequest`
naming the caller: the master key (the admin: every route, no limits) or a key's hash. Whether
that key exists, is blocked or expired is the admission's question (serve_app.http.key_limits),
asked in the same call to the state that counts the request. Probes and API docs stay open.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from serve_app.errors import AuthenticationFailed, PermissionDenied
from serve_app.gateway.keys import hash_key, well_formed
from serve_app.gateway.state import Admission
from serve_app.http.errors import send_error

OPEN_PATHS = frozenset({"/health", "/ready", "/docs", "/openapi.json", "/docs/oauth2-redirect", "/redoc"})
# Longer than any key this server makes or accepts: what is longer is not parsed at all.
_MAX_AUTHORIZATION = 512


@dataclass
class GatewayRequest:
    """What the gateway's layers learn about one request, shared down the stack in the ASGI scope."""

    master: bool
    token: str | None = None
    body: dict[str, Any] | None = None
    admission: Admission | None = None
    model: str | None = None
    cache: str = "bypass"

    @property
    def models(self) -> list[str]:
        return [] if self.admission is None else self.admission.models


_current: ContextVar[GatewayRequest | None] = ContextVar("gateway_request", default=None)


def current() -> GatewayRequest | None:
    """The request being served's gateway view; None without a gateway (or for app-handle callers)."""
    return _current.get()


def app_path(scope: Scope) -> str:
    """The path within this app: under a route prefix (`/gw`), Serve's scope path starts with the root path."""
    path, root = scope["path"], scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def authorize_model(name: str) -> None:
    """Where a route resolves a model: 403 for a model outside the key's `models` (uploads name theirs in a form)."""
    caller = _current.get()
    if caller is None:
        return
    caller.model = caller.model or name
    if caller.models and name not in caller.models:
        raise PermissionDenied(f"This key may not use the model '{name}'; its models: {caller.models}", param="model")


def allowed_models() -> frozenset[str] | None:
    """The models the caller's key may use, as LiteLLM lists them on /v1/models; None: every one
    (no gateway, the master key, or a key without a `models` list)."""
    caller = _current.get()
    return frozenset(caller.models) if caller is not None and caller.models else None


def bearer(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            if len(value) > _MAX_AUTHORIZATION:
                return None
            scheme, _, given = value.decode("latin-1").partition(" ")
            return given.strip() if scheme.lower() == "bearer" else None
    return None


class KeyAuthentication:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gateway = getattr(scope["app"].state, "gateway", None) if scope["type"] == "http" else None
        if gateway is None or app_path(scope) in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        key = bearer(scope)
        if key is not None and gateway.is_master(key):
            caller = GatewayRequest(master=True)
        elif key is not None and well_formed(key):
            caller = GatewayRequest(master=False, token=hash_key(key))
        else:
            await send_error(
                send, AuthenticationFailed("Incorrect or missing API key: send `Authorization: Bearer <key>`.")
            )
            return
        scope["gateway"] = caller
        token = _current.set(caller)
        try:
            await self.app(scope, receive, send)
        finally:
            _current.reset(token)
