"""The FastAPI app behind the ingress, built per Ingress replica by `make_api` from that replica's own config.

Serve calls the Ingress's `__serve_build_asgi_app__` after its constructor (the late-bound
`@serve.ingress()`), so each replica owns its app, its middlewares and their state: nothing is
module-global, and tests build the same app with the same function. The routes are the Ingress's
marked methods (serve_app.http.routing), registered bound to the replica.

Cross-cutting concerns are ASGI middlewares, outermost first, each added only when configured:
    metrics -> authentication -> body size -> metering -> route (admission, cache, handles)
so refusals are counted too, a 401 comes before any body is read (413 after it), and only admitted
requests of a key are metered. The request id is Serve's: its proxy's RequestIdMiddleware, outside
this app, keeps a client's `x-request-id` or makes one, puts it in every replica's log lines and
echoes it on the response.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Depends, FastAPI
from starlette.middleware import Middleware

from serve_app.common import metrics
from serve_app.config import IngressConfig
from serve_app.gateway.service import Gateway
from serve_app.http.admission import admit_image, admit_request
from serve_app.http.auth import Authentication
from serve_app.http.body_limit import BodySizeLimit
from serve_app.http.console import mount_console
from serve_app.http.errors import EXCEPTION_HANDLERS, ServeRejectionsAsAPIErrors
from serve_app.http.media_types import json_body, multipart_body
from serve_app.http.metering import Metering
from serve_app.http.metrics import RequestMetrics
from serve_app.http.openapi import openapi_schema
from serve_app.http.routing import add_routes

# Route dependencies: the body's media type (415 before a confusing schema error), then the admission.
# The metered JSON routes (chat, completions, embeddings) are admitted by their body's dependency
# (serve_app.http.admission.admitted_*), so they list the media type alone.
JSON_BODY = [Depends(json_body)]
JSON_API = [Depends(json_body), Depends(admit_request)]
UPLOAD_API = [Depends(multipart_body), Depends(admit_request)]
IMAGE_API = [Depends(admit_image)]
AUTHENTICATED = [Depends(admit_request)]


def make_api(
    routes: object,
    config: IngressConfig,
    *,
    api_key: str | None = None,
    gateway: Gateway | None = None,
    served_models: Callable[[], frozenset[str]] = frozenset,
    upload_limits: dict[str, int] | None = None,
) -> FastAPI:
    """The app one Ingress replica serves: `routes`' marked methods, behind the middlewares its config asks for."""
    middleware = []
    if metrics.ENABLED:
        middleware.append(Middleware(RequestMetrics, served_models=served_models))
    if api_key is not None or gateway is not None:
        middleware.append(Middleware(Authentication, api_key=api_key, gateway=gateway))
    middleware.append(Middleware(BodySizeLimit, limits=config, upload_limits=upload_limits or {}))
    if gateway is not None:
        middleware.append(Middleware(Metering, gateway=gateway))
    app = FastAPI(
        title="multimodel-serve",
        description="OpenAI-compatible API over Ray Serve model deployments.",
        middleware=middleware,
        exception_handlers=EXCEPTION_HANDLERS,
    )
    app.state.gateway = gateway
    app.openapi = lambda: openapi_schema(app)  # type: ignore[method-assign]  # FastAPI's documented override
    # Before any route is added: every route converts Serve's refusals into envelopes.
    app.router.route_class = ServeRejectionsAsAPIErrors
    add_routes(app, routes)
    if config.console.enabled:
        mount_console(app)
    return app
