"""Request metrics: every HTTP answer counted (route, model, status, error type) and timed to its last byte.

An ASGI middleware wrapping `send`, so a streamed response is timed until its final body message
(or until the client goes away), and refusals made by the middlewares below it (413 from
BodySizeLimit) are counted like any other answer. Labels are bounded:
- route: the matched route's template (`/v1/collections/{name}`), never the raw path; `other`
  when no route matches;
- model: what the route resolved through the model registry (`Backends._model`, which calls
  `note_model`), kept only if the Ingress serves it (`unknown` otherwise, `none` when no model
  was resolved: no `model` field, a pipeline route, or a request refused before its route ran);
- error_type: the `type` of the OpenAI error envelope of a 4xx/5xx answer, `none` for a success.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from contextvars import ContextVar

from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve_app.common import metrics
from serve_app.errors import STATUS, as_api_error

logger = logging.getLogger("ray.serve")
ERROR_TYPES = frozenset(cls.type for cls in STATUS)
# Error envelopes are a few hundred bytes; a larger error body is not ours and not parsed.
_MAX_ERROR_BODY = 16 * 1024
# What Serve reports for a client that went away before the answer started.
CLIENT_CLOSED = 499


class RequestLabels:
    """What the route learns about the request that the middleware cannot see: the model it asked for."""

    __slots__ = ("model",)

    def __init__(self) -> None:
        self.model: str | None = None


_labels: ContextVar[RequestLabels | None] = ContextVar("request_labels", default=None)


def note_model(name: str) -> None:
    """Called where a route resolves a model; a no-op for app-handle callers (no HTTP request)."""
    labels = _labels.get()
    if labels is not None:
        labels.model = name


def route_template(scope: Scope) -> str:
    route = scope.get("route")
    if route is None:
        # The router never ran (a middleware answered first): match the path as it would have.
        routes = getattr(getattr(scope.get("app"), "router", None), "routes", ())
        route = next((r for r in routes if r.matches(scope)[0] is not Match.NONE), None)
    return getattr(route, "path", None) or metrics.OTHER


def error_type(body: bytes) -> str:
    try:
        value = json.loads(body)["error"]["type"]
    except (ValueError, KeyError, TypeError):
        return metrics.OTHER
    return value if value in ERROR_TYPES else metrics.OTHER


class RequestMetrics:
    def __init__(self, app: ASGIApp, served_models: Callable[[], frozenset[str]]):
        self.app = app
        self._served_models = served_models  # changes with the traffic table: asked per request

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not metrics.ENABLED:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        labels = RequestLabels()
        token = _labels.set(labels)
        status = 0
        error_body: list[bytes] | None = None
        recorded = False

        def record(error: str) -> None:
            nonlocal recorded
            recorded = True
            if error_body is not None:
                error = error_type(b"".join(error_body))
            try:
                _record(scope, labels, self._served_models(), status, error, time.perf_counter() - started)
            except Exception:  # a metrics bug costs a sample, never the request
                logger.warning("request metrics failed for %s", scope.get("path"), exc_info=True)

        async def measuring_send(message: Message) -> None:
            nonlocal status, error_body
            last = False
            if message["type"] == "http.response.start":
                status = message["status"]
                error_body = [] if status >= 400 else None
            elif message["type"] == "http.response.body":
                if error_body is not None and sum(map(len, error_body)) < _MAX_ERROR_BODY:
                    error_body.append(message.get("body", b""))
                last = not message.get("more_body", False)
            await send(message)
            if last:
                record(metrics.NONE)  # the last byte is out

        error = metrics.NONE
        try:
            await self.app(scope, receive, measuring_send)
        except asyncio.CancelledError:
            status = status or CLIENT_CLOSED
            raise
        except Exception as exc:
            if not status:
                # Starlette's outermost handler answers it (serve_app.http.errors), from this same mapping.
                api_error = as_api_error(exc)
                status, error = api_error.status, api_error.type
            raise
        finally:
            _labels.reset(token)
            if not recorded:  # no final body: an exception, or a stream cut short by a client gone away
                record(error)


def _record(
    scope: Scope, labels: RequestLabels, served: frozenset[str], status: int, error: str, seconds: float
) -> None:
    route = route_template(scope)
    model = metrics.bounded(labels.model, served)
    metrics.HTTP_DURATION.observe(seconds, {"route": route, "model": model})
    metrics.HTTP_REQUESTS.inc(1, {"route": route, "model": model, "status": str(status), "error_type": error})
