"""413 for bodies over the ingress limits, before they are parsed or buffered whole."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve_app.config import IngressConfig
from serve_app.errors import PayloadTooLarge
from serve_app.http.auth import app_path
from serve_app.http.errors import send_error
from serve_app.http.media_types import media_type


class BodySizeLimit:
    """Multipart uploads get `max_upload_bytes` (or their path's own, `upload_limits`: the Files API
    takes batch files far bigger than a photo), everything else `max_request_bytes`.

    A declared Content-Length is refused up front; a chunked body is counted as it
    streams and cut off at the limit (the app sees a disconnect, the client a 413).
    """

    def __init__(self, app: ASGIApp, limits: IngressConfig, upload_limits: dict[str, int] | None = None):
        self.app = app
        self._limits = limits
        self._upload_limits = upload_limits or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        limits = self._limits
        multipart = media_type(headers) == "multipart/form-data"
        limit = limits.max_request_bytes
        if multipart:
            limit = self._upload_limits.get(app_path(scope), limits.max_upload_bytes)
        kind = "Upload" if multipart else "Request body"
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await send_error(send, PayloadTooLarge(f"{kind} is {declared} bytes; the limit is {limit} bytes."))
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
            await send_error(send, PayloadTooLarge(f"{kind} is over the limit of {limit} bytes."))
