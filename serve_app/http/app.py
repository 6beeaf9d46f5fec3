"""The FastAPI app behind the ingress: error envelopes, request limits, authentication.

Route handlers live in `serve_app.http.routes.*` as mixin classes of the Ingress
deployment; everything they share about HTTP is here.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve_app.errors import (
    APIError,
    AuthenticationFailed,
    InvalidRequest,
    PayloadTooLarge,
    UnsupportedMediaType,
    as_api_error,
    from_serve_rejection,
)
from serve_app.protocol import ErrorResponse

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
                raise from_serve_rejection(exc) from exc

        return handle


api = FastAPI(
    title="multimodel-serve",
    description="OpenAI-compatible API over Ray Serve model deployments.",
    responses={400: {"model": ErrorResponse}, 404: {"model": ErrorResponse}},
)
# Before any route is declared: every route (the mixins in serve_app.http.routes) uses it.
api.router.route_class = ServeRejectionsAsAPIErrors


def error_response(error: APIError) -> JSONResponse:
    return JSONResponse(error.envelope().model_dump(), status_code=error.status, headers=error.headers())


@api.exception_handler(APIError)
async def _api_error(_: Request, exc: APIError) -> JSONResponse:
    # Errors raised in a model replica arrive as RayTaskError(<APIError subclass>).
    return error_response(as_api_error(exc))


@api.exception_handler(RequestValidationError)
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


@api.exception_handler(StarletteHTTPException)
async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    error = InvalidRequest(str(exc.detail), code="not_found" if exc.status_code == 404 else None)
    envelope = error.envelope().model_dump()
    return JSONResponse(envelope, status_code=exc.status_code, headers=getattr(exc, "headers", None))


@api.exception_handler(Exception)
async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    error = as_api_error(exc)
    if error.status >= 500:
        logger.exception("request failed", exc_info=exc)
    return error_response(error)


def _media_type(headers: dict[str, str] | Request) -> str:
    return headers.get("content-type", "").split(";")[0].strip().lower()


class BodySizeLimit:
    """413 for bodies over the ingress limits, before they are parsed or buffered whole.

    Multipart uploads get `max_upload_bytes`, everything else `max_request_bytes`.
    A declared Content-Length is refused up front; a chunked body is counted as it
    streams and cut off at the limit (the app sees a disconnect, the client a 413).
    Limits are read per request from `app.state.limits`, set by the Ingress.
    """

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not hasattr(scope["app"].state, "limits"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        limits = scope["app"].state.limits
        multipart = _media_type(headers) == "multipart/form-data"
        limit = limits.max_upload_bytes if multipart else limits.max_request_bytes
        kind = "Upload" if multipart else "Request body"
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await _send_error(send, PayloadTooLarge(f"{kind} is {declared} bytes; the limit is {limit} bytes."))
            return

        received = 0
        exceeded = False
        started = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            if exceeded:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    return {"type": "http.disconnect"}
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if exceeded and not started:
                return  # the 413 below replaces whatever the app made of the cut-off body
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except Exception:
            if not exceeded:
                raise
        if exceeded and not started:
            await _send_error(send, PayloadTooLarge(f"{kind} is over the limit of {limit} bytes."))


async def _send_error(send: Send, error: APIError) -> None:
    body = json.dumps(error.envelope().model_dump()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


api.add_middleware(BodySizeLimit)


async def json_body(request: Request) -> None:
    media_type = _media_type(request.headers)
    if media_type != "application/json":
        raise UnsupportedMediaType(f"Content-Type must be application/json, got '{media_type or 'none'}'.")


async def multipart_body(request: Request) -> None:
    media_type = _media_type(request.headers)
    if media_type != "multipart/form-data":
        raise UnsupportedMediaType(f"Content-Type must be multipart/form-data, got '{media_type or 'none'}'.")


async def api_key(request: Request) -> None:
    expected = request.app.state.api_key
    if expected is None:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not secrets.compare_digest(given.strip().encode(), expected.encode()):
        raise AuthenticationFailed("Incorrect or missing API key: send `Authorization: Bearer <key>`.")


# Route dependencies: authentication first, then the body's media type.
JSON_API = [Depends(api_key), Depends(json_body)]
UPLOAD_API = [Depends(api_key), Depends(multipart_body)]
AUTHENTICATED = [Depends(api_key)]
