"""`/openapi.json` as the server behaves, so a client generated from it meets no surprise.

FastAPI's own schema documents a 422 this API never sends (schema errors are OpenAI's 400), and
lets multipart fields be `null`, which a form cannot carry (a null is the field left out). This
module fixes both, documents the statuses every route may answer with an error envelope, the
other media types a route answers with (server-sent events, subtitles as text), and the bodies of
the routes that read their request themselves (an image as a file or as base64 JSON).
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from serve_app import protocol
from serve_app.protocol import ErrorResponse

_IMAGE_BODY = "x-image-body"

ERROR_STATUSES = {
    "400": "Invalid request (OpenAI's invalid_request_error)",
    "401": "Missing or incorrect API key",
    "403": "The key may not do this",
    "404": "Unknown model or resource",
    "409": "The resource's state refuses the request (cancelling a finished batch)",
    "413": "Body over the ingress's limits",
    "415": "Unsupported Content-Type",
    "429": "Rate limit or budget reached; Retry-After says when to retry",
    "503": "Overloaded or unavailable; Retry-After says when to retry",
}
_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
_EVENTS = {"text/event-stream": {"schema": {"type": "string", "description": "`data: {json}` events, then [DONE]"}}}
_TEXT = {"text/plain": {"schema": {"type": "string", "description": "text, srt or vtt response_format"}}}

# Routes whose 200 has another media type too, by the request's own choice.
ALSO_ANSWERED_AS = {
    ("post", "/v1/chat/completions"): _EVENTS,
    ("post", "/v1/completions"): _EVENTS,
    ("post", "/v1/pipelines/video-summary"): _EVENTS,
    ("post", "/v1/pipelines/image-rag"): _EVENTS,
    ("post", "/v1/audio/transcriptions"): _TEXT,
    ("post", "/v1/audio/translations"): _TEXT,
}


def image_body(model: type[BaseModel]) -> dict[str, Any]:
    """A route's `openapi_extra` when it reads its image itself (serve_app.http.routes.vision.image_body):
    its body is `model`, as a multipart upload (the image a file) or as JSON (the image in base64)."""
    return {_IMAGE_BODY: model.__name__}


def _image_body(model: str, components: dict[str, Any]) -> dict[str, Any]:
    schema = getattr(protocol, model).model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(schema.pop("$defs", {}))
    components[model] = schema
    upload = copy.deepcopy(schema)
    upload["properties"]["image"] = {"type": "string", "format": "binary"}
    _strip_nulls(upload)
    ref = {"$ref": f"#/components/schemas/{model}"}
    return {
        "required": True,
        "content": {"multipart/form-data": {"schema": upload}, "application/json": {"schema": ref}},
    }


def openapi_schema(app: FastAPI) -> dict[str, Any]:
    """The app's schema, made once per app (FastAPI's `app.openapi` contract)."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.setdefault(
            "ErrorResponse", ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
        )
        for name in ("HTTPValidationError", "ValidationError"):
            components.pop(name, None)
        for path, operations in schema.get("paths", {}).items():
            for method, operation in operations.items():
                if _IMAGE_BODY in operation:
                    operation["requestBody"] = _image_body(operation.pop(_IMAGE_BODY), components)
                _document(operation, ALSO_ANSWERED_AS.get((method, path)))
                _no_null_form_fields(operation, components)
        app.openapi_schema = schema
    return app.openapi_schema


def _document(operation: dict[str, Any], also: dict[str, Any] | None) -> None:
    responses = operation.setdefault("responses", {})
    responses.pop("422", None)
    for status, why in ERROR_STATUSES.items():
        responses.setdefault(status, {"description": why, "content": _ERROR})
    if also and "200" in responses:
        responses["200"].setdefault("content", {}).update(also)


def _no_null_form_fields(operation: dict[str, Any], components: dict[str, Any]) -> None:
    form = operation.get("requestBody", {}).get("content", {}).get("multipart/form-data", {}).get("schema", {})
    ref = form.get("$ref", "")
    body = components.get(ref.rsplit("/", 1)[-1]) if ref.startswith("#/components/schemas/Body_") else None
    _strip_nulls(body or {})


def _strip_nulls(form: dict[str, Any]) -> None:
    for field in form.get("properties", {}).values():
        options = [o for o in field.get("anyOf", ()) if o != {"type": "null"}]
        if len(options) == 1 and "anyOf" in field:
            del field["anyOf"]
            field.update(options[0])
