"""The media type a request declares, and the route dependencies that insist on one.

Checked before the body is parsed, so a form posted to a JSON route is a clear 415 rather
than a confusing schema error.
"""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import Request

from serve_app.errors import UnsupportedMediaType


def media_type(headers: Mapping[str, str]) -> str:
    return headers.get("content-type", "").split(";")[0].strip().lower()


async def json_body(request: Request) -> None:
    declared = media_type(request.headers)
    if declared != "application/json":
        raise UnsupportedMediaType(f"Content-Type must be application/json, got '{declared or 'none'}'.")


async def multipart_body(request: Request) -> None:
    declared = media_type(request.headers)
    if declared != "multipart/form-data":
        raise UnsupportedMediaType(f"Content-Type must be multipart/form-data, got '{declared or 'none'}'.")
