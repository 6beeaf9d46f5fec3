"""The FastAPI app behind the ingress, assembled from the modules beside this one.

Routes are mixins of the Ingress deployment (serve_app.http.routes) that declare themselves
on `api`; each concern they share about HTTP is its own module here, wired in this file only.
"""

from __future__ import annotations

from fastapi import Depends, FastAPI
from starlette.middleware import Middleware

from serve_app.http.auth import api_key
from serve_app.http.body_limit import BodySizeLimit
from serve_app.http.errors import EXCEPTION_HANDLERS, ServeRejectionsAsAPIErrors
from serve_app.http.key_auth import KeyAuthentication
from serve_app.http.key_limits import KeyLimits
from serve_app.http.media_types import json_body, multipart_body
from serve_app.http.metrics import RequestMetrics
from serve_app.http.response_cache import ResponseCache
from serve_app.protocol import ErrorResponse

# Cross-cutting concerns as ASGI middlewares, outermost first: each sees the request before
# those below it. Planned ones join as one module each, at their place in this order:
#   request id -> metrics -> authentication -> limits/budgets -> cache -> route
# so every log line and metric carries the id, refusals are counted too, nobody unauthenticated
# spends a budget, and the cache answers only admitted requests. Each is off unless configured.
# The request id is Serve's: its proxy's RequestIdMiddleware, outside this app, keeps a client's
# `x-request-id` or makes one, puts it in every replica's log lines and echoes it on the response.
# Authentication is the gateway's KeyAuthentication when `gateway:` is configured (then a 401 comes
# before a 413: nobody unauthenticated makes the ingress read a body), else the static key's route
# dependency below (a 413 before a 401). KeyLimits reads the JSON body BodySizeLimit bounded.
MIDDLEWARE = [
    Middleware(RequestMetrics),  # metrics
    Middleware(KeyAuthentication),  # authentication (gateway)
    Middleware(BodySizeLimit),  # limits: sizes
    Middleware(KeyLimits),  # limits: rates, tokens, budgets (gateway), and the usage log
    Middleware(ResponseCache),  # cache (gateway)
]

api = FastAPI(
    title="multimodel-serve",
    description="OpenAI-compatible API over Ray Serve model deployments.",
    responses={400: {"model": ErrorResponse}, 404: {"model": ErrorResponse}},
    middleware=MIDDLEWARE,
    exception_handlers=EXCEPTION_HANDLERS,
)
# Before any route is declared: every route (the mixins in serve_app.http.routes) uses it.
api.router.route_class = ServeRejectionsAsAPIErrors

# Route dependencies: authentication first, then the body's media type.
JSON_API = [Depends(api_key), Depends(json_body)]
UPLOAD_API = [Depends(api_key), Depends(multipart_body)]
AUTHENTICATED = [Depends(api_key)]
