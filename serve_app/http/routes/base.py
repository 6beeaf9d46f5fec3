"""What every route mixin may rely on: the handles the Ingress was built with."""

from __future__ import annotations

from ray.serve.handle import DeploymentHandle

from serve_app.config import IngressConfig
from serve_app.errors import NotFound, ServiceUnavailable
from serve_app.http.key_auth import authorize_model
from serve_app.http.metrics import note_model


class Backends:
    """Model handles by kind and served name, plus pipeline and store handles by role.

    `_models["llm"]["tiny-qwen2"]` is the handle of the deployment serving that model;
    `_services["video_summary"]` a non-model deployment. Set by `Ingress.__init__`.
    """

    _models: dict[str, dict[str, DeploymentHandle]]
    _services: dict[str, DeploymentHandle]
    _config: IngressConfig

    def _model(self, kind: str, name: str) -> DeploymentHandle:
        note_model(name)
        authorize_model(name)  # the gateway: 403 for a model outside the key's `models`
        handle = self._models.get(kind, {}).get(name)
        if handle is None:
            served = sorted(self._models.get(kind, {}))
            raise NotFound(f"The model '{name}' does not exist; {kind} models served here: {served}", param="model")
        return handle

    def _service(self, role: str) -> DeploymentHandle:
        handle = self._services.get(role)
        if handle is None:
            raise ServiceUnavailable(f"'{role}' is not configured in this application.")
        return handle
