"""The HTTP ingress: one Serve deployment speaking the OpenAI API (plus pipelines).

It knows request shapes and status codes, never models: every model call goes through a
DeploymentHandle of the model registry the builder made, and every error leaves as one OpenAI
envelope (serve_app.http.errors). Routes live in domain mixins under serve_app.http.routes; each
replica builds its own FastAPI app from them and from its own config (serve_app.http.app.make_api).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from ray import serve
from ray.serve.handle import DeploymentHandle

from serve_app.common.model_registry import ModelRegistry
from serve_app.common.serve_status import app_status
from serve_app.config import BatchConfig, ConfigError, GatewayConfig, IngressConfig
from serve_app.gateway.service import connect_gateway
from serve_app.http.app import AUTHENTICATED, make_api
from serve_app.http.auth import allowed_models, required_api_key
from serve_app.http.online_load import OnlineLoad
from serve_app.http.ops_metrics import OpsMetrics
from serve_app.http.routes.batches import BatchRoutes
from serve_app.http.routes.console import ConsoleRoutes, ReplicaCounts, serve_replica_counts
from serve_app.http.routes.keys import KeyRoutes
from serve_app.http.routes.knowledge import KnowledgeRoutes
from serve_app.http.routes.llm import LLMRoutes
from serve_app.http.routes.speech import SpeechRoutes
from serve_app.http.routes.vision import VisionRoutes
from serve_app.http.routing import get
from serve_app.http.traffic import TrafficTable
from serve_app.protocol import AliasTargetCard, ModelCard, ModelList

STATUS_LOOK_S = 0.5  # while /ready's probes wait, Serve's statuses are read again this often
DeploymentStatuses = Callable[[], dict[str, str]]  # deployment name -> its Serve status (HEALTHY, ...)


def serve_statuses() -> dict[str, str]:
    """What Serve reports of this replica's application's deployments."""
    app_name = serve.get_replica_context().app_name
    app = app_status(app_name)
    if app.status == "NOT_STARTED" and not app.deployments:
        return {f"application {app_name}": "NOT_FOUND"}
    return app.deployments


class APIIngress(LLMRoutes, SpeechRoutes, VisionRoutes, KnowledgeRoutes, KeyRoutes, BatchRoutes, ConsoleRoutes):
    """The Ingress replica: its routes, handles and gateway; `Ingress` below is it as a Serve deployment."""

    def __init__(
        self,
        models: ModelRegistry,
        services: dict[str, DeploymentHandle],
        config: IngressConfig,
        gateway: GatewayConfig | None = None,
        pipeline_llms: dict[str, str] | None = None,
        batch: BatchConfig | None = None,
        statuses: DeploymentStatuses = serve_statuses,
        replicas: ReplicaCounts = serve_replica_counts,
        ops_metrics: OpsMetrics | None = None,
    ):
        self._models = models
        self._pipeline_llms = pipeline_llms or {}  # YAML path -> the LLM, adapter or alias it names
        self._services = services
        self._streaming_services: dict[str, DeploymentHandle] = {}
        self._config = config
        self._batch = batch
        # Online requests per model, which batch lines let go first.
        self._online = OnlineLoad(
            batch.online_grace_s if batch else 0.0, across_models=bool(batch and batch.online_first_scope == "all")
        )
        self._statuses = statuses
        self._replicas = replicas
        self._ops = ops_metrics or OpsMetrics(config.console)
        self._traffic = TrafficTable()
        self._api_key = required_api_key(config.api_key_env)
        self._versions: dict[str, str] = {}
        self._gateway = None if gateway is None else connect_gateway(gateway, services, self._model_version)
        self._publish_model_ids()

    def build_api(self) -> FastAPI:
        """This replica's app: its routes behind the middlewares its config asks for."""
        return make_api(
            self,
            self._config,
            api_key=self._api_key,
            gateway=self._gateway,
            served_models=lambda: self._served_ids,
            upload_limits={"/v1/files": self._batch.max_upload_bytes} if self._batch else None,
        )

    def __serve_build_asgi_app__(self) -> FastAPI:
        # Serve's late-bound ingress calls this once, after __init__, in the replica.
        return self.build_api()

    def reconfigure(self, user_config: dict) -> None:
        """The traffic table (aliases and their weights), applied live: Serve calls this on a changed
        user_config without restarting the replica. An invalid table fails the update, naming the field."""
        llms = self._models.served("llm")
        traffic = TrafficTable.from_user_config(user_config, set(llms))
        for path, name in self._pipeline_llms.items():
            if name not in llms and name not in traffic:
                served = sorted({*llms, *(a.name for a in traffic.aliases)})
                raise ConfigError(f"{path}: {name!r} is not an LLM, adapter or alias of this app; served: {served}")
        self._traffic = traffic
        self._publish_model_ids()

    def _publish_model_ids(self) -> None:
        # The model ids metrics may name (serve_app.http.metrics): anything else is `unknown`.
        ids = {name for _, name, _ in self._models.items()}
        self._served_ids = frozenset(ids | {alias.name for alias in self._traffic.aliases})

    @get("/health")
    async def health(self) -> dict[str, str]:
        return {"status": "ok"}

    @get("/ready")
    async def ready(self) -> JSONResponse:
        problems = await self._readiness_problems()
        if problems:
            return JSONResponse({"status": "not_ready", "problems": problems}, status_code=503)
        return JSONResponse({"status": "ready"})

    @get("/v1/models", response_model=ModelList, dependencies=AUTHENTICATED)
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
            handles = [handle for _, served, handle in self._models.items() if served == name]
            if not handles:
                raise KeyError(name)
            base = await self._probe(handles[0])
            version = f"{base.id}@{base.version}"
            if name in self._models.adapters:
                adapter = await self._probe(handles[0], name)
                version += f"+{adapter.id}@{adapter.version}"
            self._versions[name] = version
        return self._versions[name]

    def _served(self) -> list[tuple[str, str, DeploymentHandle]]:
        return list(self._models.items())

    async def _probe(self, handle: DeploymentHandle, *args: str) -> ModelCard:
        return await asyncio.wait_for(handle.card.remote(*args), self._config.probe_timeout_s)

    async def _card(self, kind: str, name: str, handle: DeploymentHandle) -> ModelCard:
        try:
            # An adapter's card comes from its base's replica, which knows the adapter's version.
            card = await (self._probe(handle, name) if name in self._models.adapters else self._probe(handle))
            # An alias (e.g. whisper-1) is served by the same deployment: list it under its own id.
            return card if card.id == name else card.model_copy(update={"id": name})
        except Exception:
            return ModelCard(id=name, kind=kind, engine="unavailable", version="unknown")

    async def _readiness_problems(self) -> list[str]:
        """Every deployment not HEALTHY at any moment of the check, and every model that did not answer.

        A deployment not HEALTHY at the start is the answer at once, without probing: while the app
        starts, every poller's check would otherwise wait on replicas still loading and read Serve's
        statuses all the while, CPU the loading replicas need. Serve's statuses are read again while
        the probes wait: a replica that fails its health check is replaced, and a probe may wait for
        the new one (up to `probe_timeout_s`), which answers. Read once at the start, that outage would
        pass as ready.
        """
        unhealthy: dict[str, str] = {}

        def look() -> None:
            for name, status in self._statuses().items():
                if status != "HEALTHY":
                    unhealthy.setdefault(name, status)

        await asyncio.to_thread(look)
        silent: list[str] = []
        if not unhealthy:
            probing = asyncio.ensure_future(self._probe_problems())
            try:
                while not (await asyncio.wait([probing], timeout=STATUS_LOOK_S))[0]:
                    await asyncio.to_thread(look)
            finally:
                probing.cancel()  # a no-op once done; otherwise Serve's status could not be read
            silent = probing.result()
        return [f"deployment {name}: {status}" for name, status in unhealthy.items()] + silent

    async def _probe_problems(self) -> list[str]:
        # An adapter is covered by its base's probe (probing it would load it).
        served = [(name, handle) for _, name, handle in self._served() if name not in self._models.adapters]
        answers = await asyncio.gather(*(self._probe(handle) for _, handle in served), return_exceptions=True)
        return [
            f"model {name} ({handle.deployment_name}): {type(answer).__name__}"
            for (name, handle), answer in zip(served, answers, strict=True)
            if isinstance(answer, BaseException)
        ]


Ingress = serve.deployment(name="Ingress")(serve.ingress()(APIIngress))
