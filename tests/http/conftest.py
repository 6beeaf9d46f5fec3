"""The real Ingress (its routes, middlewares, handlers) over fake handles, served by TestClient.

The replica is built as Serve builds it, minus Ray: Serve's wrapper class and its constructor,
which give the app Serve serves. That is a copy of `serve_app.http.app.api`, frozen by
`@serve.ingress` (it holds the state Ingress.__init__ sets), so the client talks to the replica,
never to the module's `api`. `serve.get_replica_context()`, where the routes find `self`, answers
with the replica the request came to; Serve's plain-text handlers for its refusals are registered
as a replica registers them, so the tests also see that ours win.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from types import SimpleNamespace
from typing import Any

import pytest
import ray
import ray._private.worker
from fastapi.responses import PlainTextResponse
from ray import serve
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError
from starlette.datastructures import State
from starlette.testclient import TestClient
from starlette.types import Receive, Scope, Send

from serve_app.config import GatewayConfig, IngressConfig
from serve_app.http.ingress import Ingress
from tests.fakes import FakeASR, FakeDetector, FakeHandle, FakeLLM
from tests.http.support import ASR, DETECTOR, LLM

APP = "default"
KEY_ENV = "TEST_SERVE_API_KEY"


class _Replica(Ingress.func_or_class):
    def __del__(self):
        # Serve awaits the async original when it stops a replica; nothing was started here that
        # needs stopping, and garbage collection would only warn of a coroutine never awaited.
        pass


# The replica (and what serve.status() says of its app) for the request being served.
_serving: ContextVar[SimpleNamespace] = ContextVar("serving")


class Served:
    """The ASGI app a TestClient talks to: one replica, found by its routes as Serve's replica context."""

    def __init__(self, replica: _Replica, status: SimpleNamespace):
        self.replica = replica
        self._context = SimpleNamespace(
            app_name=APP, deployment="Ingress", replica_tag="fake", servable_object=replica, status=status
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = _serving.set(self._context)
        try:
            await self.replica(scope, receive, send)
        finally:
            _serving.reset(token)


def _serve_refusal_as_plain_text(_request, exc: Exception) -> PlainTextResponse:
    # Like the handlers Serve's replica registers on an ingress app (replica.py, handle_exception).
    status = exc.status_code if isinstance(exc, BackPressureError) else 503
    return PlainTextResponse(exc.message, status_code=status)


@pytest.fixture(autouse=True)
def no_ray(monkeypatch) -> Iterator[None]:
    """Whatever a route reaches for, it is not a Ray cluster.

    In a full run the session's Ray is already up (tests/conftest.py starts it during collection
    so the session app loads meanwhile): these tests must neither start one nor use it.
    """
    ray_before = ray.is_initialized()

    def refuse(*_args, **_kwargs):
        raise AssertionError("tests/http must not start Ray")

    monkeypatch.setattr(ray, "init", refuse)
    monkeypatch.setattr(ray._private.worker, "init", refuse)
    monkeypatch.setattr(serve, "get_replica_context", _serving.get)
    monkeypatch.setattr(serve, "status", lambda: _serving.get().status)
    for name in ("get_app_handle", "get_deployment_handle"):
        monkeypatch.setattr(serve, name, refuse)
    yield
    assert ray.is_initialized() == ray_before


@pytest.fixture()
def llm() -> FakeLLM:
    return FakeLLM("Hello there friend", name=LLM)


@pytest.fixture()
def asr() -> FakeASR:
    return FakeASR(ASR)


@pytest.fixture()
def detector() -> FakeDetector:
    return FakeDetector(DETECTOR)


@pytest.fixture()
def backends(llm, asr, detector) -> dict[str, Any]:
    """The Ingress arguments by default: one fake per model kind, `whisper-1` an alias of the ASR."""
    asr_handle = FakeHandle(asr, name="ASR")
    models = {
        "llm": {LLM: FakeHandle(llm, name="LLM")},
        "asr": {ASR: asr_handle, "whisper-1": asr_handle},
        "detector": {DETECTOR: FakeHandle(detector, name="Detector")},
    }
    return {"models": models, "services": {}}


@pytest.fixture()
def serve_ingress(monkeypatch) -> Iterator[Callable[..., TestClient]]:
    """`serve_ingress(models, services, api_key=..., gateway=..., **IngressConfig fields)` -> a client of that Ingress.

    `unhealthy` maps deployments to the status serve.status() reports for them (else HEALTHY).
    `llm_adapters` (adapter id -> base id), `pipeline_llms` (YAML path -> the LLM a pipeline names) and
    `user_config` (the traffic table) are passed as Serve does.
    Several may run in one test; each client reaches its own replica, with its own app state.
    """
    clients: list[TestClient] = []

    def start(
        models: dict,
        services: dict | None = None,
        *,
        api_key: str | None = None,
        unhealthy: dict[str, str] | None = None,
        gateway: GatewayConfig | None = None,
        llm_adapters: dict[str, str] | None = None,
        user_config: dict | None = None,
        pipeline_llms: dict[str, str] | None = None,
        **ingress: Any,
    ) -> TestClient:
        if api_key is not None:
            monkeypatch.setenv(KEY_ENV, api_key)
            ingress["api_key_env"] = KEY_ENV
        replica = _replica(models, services or {}, IngressConfig(**ingress), gateway, llm_adapters, pipeline_llms)
        if user_config is not None:
            replica.reconfigure(user_config)
        served = Served(replica, _status(models, services or {}, unhealthy or {}))
        # The client sees what an HTTP client would: a 500 envelope, not the server's traceback.
        client = TestClient(served, raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return client

    yield start
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture()
def client(serve_ingress, backends) -> TestClient:
    return serve_ingress(**backends)


def _replica(
    models: dict,
    services: dict,
    config: IngressConfig,
    gateway: GatewayConfig | None = None,
    llm_adapters: dict | None = None,
    pipeline_llms: dict | None = None,
) -> _Replica:
    """The class Serve runs in the replica, through its own (async) constructor."""
    replica = _Replica.__new__(_Replica)
    # A loop of its own: asyncio.run would unset the current loop that pytest-asyncio keeps.
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(replica.__init__(models, services, config, gateway, llm_adapters, pipeline_llms))
    finally:
        loop.close()
    _own_app_state(replica)
    for refusal in (BackPressureError, DeploymentUnavailableError):
        replica.app.add_exception_handler(refusal, _serve_refusal_as_plain_text)
    return replica


def _own_app_state(replica: _Replica) -> None:
    """Give the replica an app of its own holding what its __init__ set, as each Serve replica has.

    In one process every replica shares the app `@serve.ingress` froze, and __init__ writes the
    replica's state (limits, key, gateway) onto it: the last replica built would answer for all,
    and a gateway's SQLite connection left there would have to be pickled by a later in-process
    build of the app. A shallow copy shares the routes; Starlette points `scope["app"]` at the copy
    and builds its middleware stack afresh.
    """
    shared = replica.app
    own = copy.copy(shared)
    own.state, shared.state = shared.state, State()
    own.middleware_stack = None
    replica._set_asgi_app(own)


def _status(models: dict, services: dict, unhealthy: dict[str, str]) -> SimpleNamespace:
    handles = [h for by_name in models.values() for h in by_name.values()] + list(services.values())
    names = {h.deployment_name for h in handles} | set(unhealthy)
    deployments = {name: SimpleNamespace(status=unhealthy.get(name, "HEALTHY")) for name in names}
    return SimpleNamespace(applications={APP: SimpleNamespace(deployments=deployments)})
