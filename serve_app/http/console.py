"""The browser console's files, served at `/ui/` from the package with a strict Content-Security-Policy.

The console is plain ES modules and one stylesheet (serve_app/http/console_ui/): no build step, no
CDN, nothing fetched from elsewhere, so it works with no network. Every call it makes goes through
the public API with the key the user typed (kept in the browser's sessionStorage, never sent here
to be stored), so it can do nothing that key cannot. The CSP allows scripts, styles and fetches
from this origin only, and `blob:` media (the page's own video and subtitle track): no
`unsafe-inline`, so even text that slipped into the page as HTML could not run.

Mounted by `make_api` only when `ingress.console.enabled`; the files are open (no key needed to
load the page), as the probes and the API docs are (serve_app/http/auth.py).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import RedirectResponse
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

FILES = Path(__file__).with_name("console_ui")
PREFIX = "/ui"
CSP = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' blob: data:",
        "media-src 'self' blob:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    # The files change with the package: revalidate (ETag) rather than run a stale module beside a new one.
    (b"cache-control", b"no-cache"),
]


class ConsoleFiles(StaticFiles):
    """Starlette's static files with the console's security headers on every answer."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *HEADERS]
            await send(message)

        await super().__call__(scope, receive, with_headers)


def mount_console(app: FastAPI) -> None:
    """`/ui/` serves index.html and the modules beside it; `/ui` redirects there (relative URLs need the slash)."""

    async def to_console(request: Request) -> RedirectResponse:
        return RedirectResponse(f"{request.scope.get('root_path', '')}{PREFIX}/")

    app.add_route(PREFIX, to_console, include_in_schema=False)
    app.mount(PREFIX, ConsoleFiles(directory=FILES, html=True), name="console")
