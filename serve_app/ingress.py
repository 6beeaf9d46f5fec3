"""The HTTP ingress: one Serve deployment speaking the OpenAI API (plus pipelines).

It knows request shapes and status codes, never models: every model call goes
through a DeploymentHandle, and every error leaves as one OpenAI envelope
(serve_app.http.errors). Routes live in domain mixins under serve_app.http.routes.
"""

from __future__ import annotations

import asyncio

from fastapi.responses import JSONResponse
from ray import serve
from ray.serve.handle import DeploymentHandle

from serve_app.config import GatewayConfig, IngressConfig
from serve_app.gateway.service import connect_gateway
from serve_app.http.app import AUTHENTICATED, api
from serve_app.http.auth import required_api_key
from serve_app.http.routes.keys import KeyRoutes
from serve_app.http.routes.knowledge import KnowledgeRoutes
from serve_app.http.routes.llm import LLMRoutes
from serve_app.http.routes.speech import SpeechRoutes
from serve_app.http.routes.vision import VisionRoutes
from serve_app.protocol import ModelCard, ModelList


def _unhealthy_deployments() -> list[str]:
    app_name = serve.get_replica_context().app_name
    app = serve.status().applications.get(app_name)
    if app is None:
        return [f"application {app_name} not found"]
    return [
        f"deployment {name}: {status.status}" for name, status in app.deployments.items() if status.status != "HEALTHY"
    ]


@serve.deployment(name="Ingress")
@serve.ingress(api)
class Ingress(LLMRoutes, SpeechRoutes, VisionRoutes, KnowledgeRoutes, KeyRoutes):
    def __init__(
        self,
        models: dict[str, dict[str, DeploymentHandle]],
        services: dict[str, DeploymentHandle],
        config: IngressConfig,
        gateway: GatewayConfig | None = None,
    ):
        self._models = models
        self._services = services
        self._config = config
        api.state.limits = config
        api.state.api_key = required_api_key(config.api_key_env)
        self._versions: dict[str, str] = {}
        self._gateway = None if gateway is None else connect_gateway(gateway, services, self._model_version)
        api.state.gateway = self._gateway
        # The model ids metrics may name (serve_app.http.metrics): anything else is `unknown`.
        api.state.served_models = frozenset(name for by_name in models.values() for name in by_name)

    @api.get("/health")
    async def health(self) -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/ready")
    async def ready(self) -> JSONResponse:
        problems = await self._readiness_problems()
        if problems:
            return JSONResponse({"status": "not_ready", "problems": problems}, status_code=503)
        return JSONResponse({"status": "ready"})

    @api.get("/v1/models", response_model=ModelList, dependencies=AUTHENTICATED)
    async def models(self) -> ModelList:
        served = self._served()
        cards = await asyncio.gather(*(self._card(kind, name, h) for kind, name, h in served))
        return ModelList(data=list(cards))

    async def _model_version(self, name: str) -> str:
        """What the response cache keys answers by: the served model's card version (one card call per name)."""
        if name not in self._versions:
            handles = [by_name[name] for by_name in self._models.values() if name in by_name]
            if not handles:
                raise KeyError(name)
            card = await self._probe(handles[0])
            self._versions[name] = f"{card.id}@{card.version}"
        return self._versions[name]

    def _served(self) -> list[tuple[str, str, DeploymentHandle]]:
        return [(kind, name, h) for kind, by_name in self._models.items() for name, h in by_name.items()]

    async def _probe(self, handle: DeploymentHandle) -> ModelCard:
        return await asyncio.wait_for(handle.card.remote(), self._config.probe_timeout_s)

    async def _card(self, kind: str, name: str, handle: DeploymentHandle) -> ModelCard:
        try:
            card = await self._probe(handle)
            # An alias (e.g. whisper-1) is served by the same deployment: list it under its own id.
            return card if card.id == name else card.model_copy(update={"id": name})
        except Exception:
            return ModelCard(id=name, kind=kind, engine="unavailable", version="unknown")

    async def _readiness_problems(self) -> list[str]:
        problems = await asyncio.to_thread(_unhealthy_deployments)
        for _, name, handle in self._served():
            try:
                await self._probe(handle)
            except Exception as exc:
                problems.append(f"model {name} ({handle.deployment_name}): {type(exc).__name__}")
        return problems
