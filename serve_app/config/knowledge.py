"""The knowledge-base section: where the VectorStore deployment keeps its Qdrant collections.

Embedded (the default: a directory owned by one replica, no server to run) or a Qdrant
server (then VectorStore replicas may scale). The server URL can come from an environment
variable read in the replica, so one YAML serves a laptop, compose and Kubernetes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import Field, model_validator

from serve_app.config.common import _Strict


class QdrantConfig(_Strict):
    path: str | None = Field(
        default=None,
        description="Embedded Qdrant directory (owned by ONE VectorStore replica); default <data_dir>/qdrant. "
        "':memory:' keeps nothing.",
    )
    url: str | None = Field(default=None, description="A Qdrant server (then VectorStore replicas may scale).")
    url_env: str | None = Field(
        default=None,
        description="Environment variable holding the server URL; when set and present it wins over url "
        "(and over path). Read in the VectorStore replica, so compose / Kubernetes set it per environment.",
    )
    api_key_env: str | None = Field(default=None, description="Environment variable holding the server's API key.")
    timeout_s: float = Field(default=10.0, gt=0.0)

    @model_validator(mode="after")
    def _one_location(self) -> QdrantConfig:
        if self.path and self.url:
            raise ValueError("set qdrant.path (embedded) or qdrant.url (server), not both")
        return self

    def server_url(self, environ: Mapping[str, str] = os.environ) -> str | None:
        """The server to connect to: $url_env when it is set and non-empty, else `url`; None means embedded."""
        from_env = environ.get(self.url_env) if self.url_env else None
        return from_env or self.url
