"""What every route mixin may rely on: the handles the Ingress was built with."""

from __future__ import annotations

from typing import TypeVar

from ray.serve.handle import DeploymentHandle

from serve_app.common.model_registry import ModelRegistry
from serve_app.config import IngressConfig
from serve_app.errors import NotFound, ServiceUnavailable
from serve_app.gateway.service import Gateway
from serve_app.http.auth import authorize_model
from serve_app.http.metrics import note_model
from serve_app.http.online_load import OnlineLoad
from serve_app.http.traffic import TrafficTable
from serve_app.protocol import ImageRAGRequest, VideoSummaryOptions

PipelineRequest = TypeVar("PipelineRequest", VideoSummaryOptions, ImageRAGRequest)  # each names its LLM in `model`


class Backends:
    """Model handles by kind and served name, plus pipeline and store handles by role.

    `_models.get("llm", "tiny-qwen2")` is the handle of the deployment serving that model; an adapter's
    is its base deployment's handle carrying the adapter as Serve's multiplexed model id, so Serve
    routes it to a replica that already holds the adapter (serve_app.common.model_registry).
    `_services["video_summary"]` is a non-model deployment. `_traffic` resolves aliases. Set by
    `APIIngress.__init__` / `reconfigure`.
    """

    _models: ModelRegistry
    _services: dict[str, DeploymentHandle]
    _streaming_services: dict[str, DeploymentHandle]
    _config: IngressConfig
    _gateway: Gateway | None
    _traffic: TrafficTable
    _pipeline_llms: dict[str, str]
    _online: OnlineLoad  # online requests per model: batch lines wait for them (serve_app.http.online_load)

    def _model(self, kind: str, name: str) -> DeploymentHandle:
        authorize_model(name)  # the gateway: 403 for a model outside the key's `models`
        return self._lookup(kind, name)

    def _lookup(self, kind: str, name: str, *, stream: bool = False) -> DeploymentHandle:
        note_model(name)
        handle = self._models.streaming(kind, name) if stream else self._models.get(kind, name)
        if handle is None:
            served = sorted(self._models.served(kind))
            if kind == "llm":
                served += sorted(a.name for a in self._traffic.aliases)
            raise NotFound(f"The model '{name}' does not exist; {kind} models served here: {served}", param="model")
        return handle

    def _llm(self, name: str, *, stream: bool = False) -> DeploymentHandle:
        """The LLM that answers `name`: a target the traffic table picked, so the key was authorized for
        the id the request named (an alias, which may stand for targets the key does not list)."""
        return self._lookup("llm", name, stream=stream)

    def _pipeline_llm(self, options: PipelineRequest, path: str) -> PipelineRequest:
        """A pipeline request's LLM, authorized as named; an alias (the request's, else the one the
        pipeline's config at `path` names) is rewritten to name the target picked for it, which the
        pipeline then calls directly (pipelines route by model id, aliases are the Ingress's)."""
        if options.model is not None:
            authorize_model(options.model)
        name = options.model or self._pipeline_llms.get(path)
        if name is None or name in self._models.served("llm"):
            return options
        if name not in self._traffic:
            if options.model is not None:
                return options  # the pipeline answers 404 for a model it does not serve
            # Checked when a traffic table is applied; an app without one only learns it here.
            raise ServiceUnavailable(f"{path}: {name!r} is not an LLM, adapter or alias of this app.")
        return options.model_copy(update={"model": self._traffic.resolve(name).model})

    def _service(self, role: str, *, stream: bool = False) -> DeploymentHandle:
        handle = self._services.get(role)
        if handle is None:
            raise ServiceUnavailable(f"'{role}' is not configured in this application.")
        if not stream:
            return handle
        if role not in self._streaming_services:  # made once: options() copies the handle
            self._streaming_services[role] = handle.options(stream=True)
        return self._streaming_services[role]
