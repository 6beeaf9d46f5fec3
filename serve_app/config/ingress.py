"""The ingress section: limits and authentication at the HTTP edge.

These bound what one client can make the ingress hold (body and upload sizes) before any
model sees the request, and how long a health probe waits on each deployment. The API key
is named by an environment variable so the secret never sits in a Serve YAML, which gets
committed and shown in dashboards.
"""

from __future__ import annotations

from pydantic import Field

from serve_app.config.common import _Strict


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
