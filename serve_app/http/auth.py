"""Who is calling: one authentication step for the static key and the gateway's keys, before any body is read.

An ASGI middleware, added by `make_api` only when a key is configured: the static
`ingress.api_key_env`, the gateway (`gateway:`, its master key and the keys it makes), or both.
One precedence for every request, `Authorization: Bearer <key>`:

1. the static key: the operator, every route, no limits (logged as the master key with a gateway);
2. the gateway's master key: the admin, the same;
3. any other well-formed key, with a gateway: a key's caller, whose key is checked (unknown, blocked,
   expired) and limited by the admission (serve_app.http.admission), in one call to the state;
4. anything else: 401 `invalid_api_key`, before the body is read (so nobody unauthenticated makes
   the ingress read an upload), and before any model runs.

Probes, the API docs and the console's files (`/ui/`) stay open. The `Caller` rides in a context
variable, where the routes' admission, usage reports and key routes find it; app-handle callers
(no HTTP) have none.
"""

from __future__ import annotations

import os
import secrets
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Receive, Scope, Send

from serve_app.errors import AuthenticationFailed, PermissionDenied
from serve_app.gateway.keys import hash_key, well_formed
from serve_app.gateway.state import Admission
from serve_app.http.errors import send_error

if TYPE_CHECKING:
    from serve_app.gateway.service import Gateway

OPEN_PATHS = frozenset({"/health", "/ready", "/docs", "/openapi.json", "/docs/oauth2-redirect", "/redoc", "/ui"})
# The console's files (serve_app/http/console.py): the page must load before the user types a key.
OPEN_PREFIXES = ("/ui/",)
# Longer than any key this server makes or accepts: what is longer is not parsed at all.
_MAX_AUTHORIZATION = 512
_UNAUTHENTICATED = "Incorrect or missing API key: send `Authorization: Bearer <key>`."


@dataclass
class Usage:
    """What a request used, as its route reports it (serve_app.http.admission.report_*)."""

    prompt_tokens: int | None = None  # None: the route reported none, the admission's estimate stands
    completion_tokens: int = 0
    audio_seconds: float = 0.0
    variant: str | None = None  # the model that answered (an alias's target, a fallback)


@dataclass
class Caller:
    """One authenticated request: the operator or admin (`master`), or a key by its hash (`token`)."""

    master: bool
    token: str | None = None
    admission: Admission | None = None
    reservation: str | None = None  # what the admission holds back, settled when the answer ends
    model: str | None = None  # the model the request named, once a route resolved it
    prompt_estimate: int = 0
    images: int = 0
    cache: str = "bypass"  # what the response cache did: hit, miss, bypass (the `x-cache` header)
    usage: Usage = field(default_factory=Usage)

    @property
    def models(self) -> list[str]:
        return [] if self.admission is None else self.admission.models


_current: ContextVar[Caller | None] = ContextVar("caller", default=None)


def current() -> Caller | None:
    """The request being served's caller; None when no key is configured, and for app-handle callers."""
    return _current.get()


def required_api_key(env_name: str | None) -> str | None:
    """The static key from the replica's environment; a configured but empty variable fails the replica at start."""
    if env_name is None:
        return None
    key = os.environ.get(env_name)
    if not key:
        raise RuntimeError(
            f"ingress.api_key_env is {env_name!r} but that variable is empty or unset in the ingress replica; "
            "export it before `serve run`, or set it in the application's runtime_env.env_vars"
        )
    return key


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


def _same(given: str, expected: bytes) -> bool:
    # Constant-time: the comparison must not tell an attacker how much of a guess was right.
    return secrets.compare_digest(given.encode(), expected)


class Authentication:
    def __init__(self, app: ASGIApp, api_key: str | None, gateway: Gateway | None):
        self.app = app
        self._api_key = api_key.encode() if api_key else None
        self._gateway = gateway

    def identify(self, key: str | None) -> Caller | None:
        """The caller a bearer key makes, by the precedence above; None: 401."""
        if key is None:
            return None
        if self._api_key is not None and _same(key, self._api_key):
            return Caller(master=True)
        if self._gateway is None:
            return None
        if self._gateway.is_master(key):
            return Caller(master=True)
        return Caller(master=False, token=hash_key(key)) if well_formed(key) else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or app_path(scope) in OPEN_PATHS or app_path(scope).startswith(OPEN_PREFIXES):
            await self.app(scope, receive, send)
            return
        caller = self.identify(bearer(scope))
        if caller is None:
            await send_error(send, AuthenticationFailed(_UNAUTHENTICATED))
            return
        token = _current.set(caller)
        try:
            await self.app(scope, receive, send)
        finally:
            _current.reset(token)
