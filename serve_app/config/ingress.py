"""The ingress section: limits and authentication at the HTTP edge.

These bound what one client can make the ingress hold (body and upload sizes) before any
model sees the request, and how long a health probe waits on each deployment. The API key
is named by an environment variable so the secret never sits in a Serve YAML, which gets
committed and shown in dashboards. The browser console (`console:`) is off unless asked for: an
operator turns on what the ingress serves beyond the API.
"""

from __future__ import annotations

from pydantic import Field

from serve_app.config.common import _Strict


class ConsoleConfig(_Strict):
    """The browser console at `/ui/` (serve_app/http/console.py) and the metrics its Operations page reads."""

    enabled: bool = Field(default=False, description="Serve the console's files at /ui/ and its /console/* routes.")
    metrics_urls: list[str] = Field(
        default_factory=list,
        description="Prometheus text endpoints the Operations page summarises (server side); "
        "empty: every alive Ray node's metrics export port.",
    )
    scrape_timeout_s: float = Field(default=2.0, gt=0.0, le=30.0, description="Per endpoint and scrape.")
    min_interval_s: float = Field(
        default=2.0, ge=0.5, le=300.0, description="At most one scrape per this; a poll in between reuses the last."
    )
    history_points: int = Field(default=150, ge=2, le=2000, description="Points each chart keeps.")


class IngressConfig(_Strict):
    max_request_bytes: int = Field(default=1 << 20, ge=1024, description="Larger JSON bodies get 413.")
    max_upload_bytes: int = Field(
        default=25 << 20, ge=1024, description="Larger multipart uploads (audio, video, images) get 413."
    )
    probe_timeout_s: float = Field(
        default=5.0, gt=0.0, description="How long /ready and /v1/models wait on each deployment."
    )
    api_key_env: str | None = Field(
        default=None,
        description="Environment variable holding the key clients send as `Authorization: Bearer <key>`. "
        "Unset: no authentication. The key itself never goes in the YAML.",
    )
    console: ConsoleConfig = Field(default_factory=ConsoleConfig, description="The browser console at /ui/.")
