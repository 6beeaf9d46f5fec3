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

from serve_app.common.llm_handles import LLMHandles
from serve_app.config import ConfigError, GatewayConfig, IngressConfig
from serve_app.gateway.service import connect_gateway
from serve_app.http.app import AUTHENTICATED, api
from serve_app.http.auth import required_api_key
from serve_app.http.key_auth import allowed_models
from serve_app.http.routes.keys import KeyRoutes
from serve_app.http.routes.knowledge import KnowledgeRoutes
from serve_app.http.routes.llm import LLMRoutes
from serve_app.http.routes.speech import SpeechRoutes
from serve_app.http.routes.vision import VisionRoutes
from serve_app.http.traffic import TrafficTable
from serve_app.protocol import AliasTargetCard, ModelCard, ModelList


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
        llm_adapters: dict[str, str] | None = None,
        pipeline_llms: dict[str, str] | None = None,
    ):
        self._llm_adapters = llm_adapters or {}  # adapter id -> its base LLM's id
        self._pipeline_llms = pipeline_llms or {}  # YAML path -> the LLM, adapter or alias it names
        models = {**models, "llm": dict(LLMHandles(models.get("llm", {}), self._llm_adapters))}
        self._models = models
        self._services = services
        self._config = config
        self._traffic = TrafficTable()
        # What the middlewares read (scope["app"].state): kept, so a live reconfigure writes where
        # __init__ did.
        self._app_state = api.state
        self._app_state.limits = config
        self._app_state.api_key = required_api_key(config.api_key_env)
        self._versions: dict[str, str] = {}
        self._gateway = None if gateway is None else connect_gateway(gateway, services, self._model_version)
        self._app_state.gateway = self._gateway
        self._publish_model_ids()

    def reconfigure(self, user_config: dict) -> None:
        """The traffic table (aliases and their weights), applied live: Serve calls this on a changed
        user_config without restarting the replica. An invalid table fails the update, naming the field."""
        traffic = TrafficTable.from_user_config(user_config, set(self._models.get("llm", {})))
        for path, name in self._pipeline_llms.items():
            if name not in self._models.get("llm", {}) and name not in traffic:
                served = sorted({*self._models.get("llm", {}), *(a.name for a in traffic.aliases)})
                raise ConfigError(f"{path}: {name!r} is not an LLM, adapter or alias of this app; served: {served}")
        self._traffic = traffic
        self._publish_model_ids()

    def _publish_model_ids(self) -> None:
        # The model ids metrics may name (serve_app.http.metrics): anything else is `unknown`.
        ids = {name for by_name in self._models.values() for name in by_name}
        self._app_state.served_models = frozenset(ids | {alias.name for alias in self._traffic.aliases})

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
        allowed = allowed_models()  # a key limited to some models sees those alone
        served = [(kind, name, h) for kind, name, h in self._served() if allowed is None or name in allowed]
        cards = await asyncio.gather(*(self._card(kind, name, h) for kind, name, h in served))
        aliases = [card for card in self._alias_cards() if allowed is None or card.id in allowed]
        return ModelList(data=[*cards, *aliases])

    def _alias_cards(self) -> list[ModelCard]:
        return [
            ModelCard(
                id=alias.name,
                kind="llm",
                engine="alias",
                version="-",
                targets=[AliasTargetCard(model=t.model, weight=t.weight) for t in alias.targets],
                fallback=alias.fallback,
            )
            for alias in self._traffic.aliases
        ]

    async def _model_version(self, name: str) -> str:
        """What the response cache keys answers by: the served model's card version (one card call per
        name); an adapter's covers its base's too. An alias has none (KeyError, so its requests are not
        cached): its answer depends on the variant picked for each user, and a cache shared by all
        callers would hand one variant's answers to users kept on the other."""
        if name in self._traffic:
            raise KeyError(name)
        if name not in self._versions:
            handles = [by_name[name] for by_name in self._models.values() if name in by_name]
            if not handles:
                raise KeyError(name)
            base = await self._probe(handles[0])
            version = f"{base.id}@{base.version}"
            if name in self._llm_adapters:
                adapter = await self._probe(handles[0], name)
                version += f"+{adapter.id}@{adapter.version}"
            self._versions[name] = version
        return self._versions[name]

    def _served(self) -> list[tuple[str, str, DeploymentHandle]]:
        return [(kind, name, h) for kind, by_name in self._models.items() for name, h in by_name.items()]

    async def _probe(self, handle: DeploymentHandle, *args: str) -> ModelCard:
        return await asyncio.wait_for(handle.card.remote(*args), self._config.probe_timeout_s)

    async def _card(self, kind: str, name: str, handle: DeploymentHandle) -> ModelCard:
        try:
            # An adapter's card comes from its base's replica, which knows the adapter's version.
            card = await (self._probe(handle, name) if name in self._llm_adapters else self._probe(handle))
            # An alias (e.g. whisper-1) is served by the same deployment: list it under its own id.
            return card if card.id == name else card.model_copy(update={"id": name})
        except Exception:
            return ModelCard(id=name, kind=kind, engine="unavailable", version="unknown")

    async def _readiness_problems(self) -> list[str]:
        problems = await asyncio.to_thread(_unhealthy_deployments)
        for _, name, handle in self._served():
            if name in self._llm_adapters:
                continue  # its base's probe covers it; probing would load the adapter
            try:
                await self._probe(handle)
            except Exception as exc:
                problems.append(f"model {name} ({handle.deployment_name}): {type(exc).__name__}")
        return problems
