"""Every failure leaves as one OpenAI envelope, with the status from serve_app.errors' table.

The handlers cover our APIErrors (also when Ray delivers them wrapped), FastAPI's schema errors
(its 422 becomes OpenAI's 400), Starlette's HTTP errors (unknown route, wrong method) and anything
unexpected (a 500 that never shows the exception's text).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import Send

from serve_app.errors import APIError, InvalidRequest, as_api_error, from_serve_rejection

logger = logging.getLogger("ray.serve")


class ServeRejectionsAsAPIErrors(APIRoute):
    """Turns Serve's refusals of a handle call inside a route into our APIErrors.

    A full downstream queue raises `BackPressureError` (wrapped in a RayTaskError when a
    pipeline replica made the call) and a failed deployment `DeploymentUnavailableError`.
    Serve registers its own FastAPI handlers for both, answering plain text, and those would
    win over ours; converting here, inside the route, gives the OpenAI envelope and Retry-After.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except (BackPressureError, DeploymentUnavailableError) as exc:
                raise (from_serve_rejection(exc) or exc) from exc

        return handle


def error_response(error: APIError) -> JSONResponse:
    return JSONResponse(error.envelope().model_dump(), status_code=error.status, headers=error.headers())


async def send_error(send: Send, error: APIError) -> None:
    """The envelope from a plain ASGI middleware, which answers before any route or handler runs."""
    body = json.dumps(error.envelope().model_dump()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in (error.headers() or {}).items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _api_error(_: Request, exc: APIError) -> JSONResponse:
    # Errors raised in a model replica arrive as RayTaskError(<APIError subclass>).
    return error_response(as_api_error(exc))


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


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    error = InvalidRequest(str(exc.detail), code="not_found" if exc.status_code == 404 else None)
    envelope = error.envelope().model_dump()
    headers = dict(getattr(exc, "headers", None) or {})
    if exc.status_code == 405:
        # Starlette names the methods of the first route that matched the path; a path served by
        # several routes (GET and DELETE /v1/collections/{name}) allows all of theirs.
        headers["Allow"] = ", ".join(_allowed_methods(request))
    return JSONResponse(envelope, status_code=exc.status_code, headers=headers or None)


def _allowed_methods(request: Request) -> list[str]:
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    error = as_api_error(exc)
    if error.status >= 500:
        logger.exception("request failed", exc_info=exc)
    return error_response(error)


EXCEPTION_HANDLERS: dict[Any, Any] = {
    APIError: _api_error,
    RequestValidationError: _validation_error,
    StarletteHTTPException: _http_error,
    # Starlette gives this one to its outermost middleware: it also answers what a middleware raised.
    Exception: _unexpected,
}
