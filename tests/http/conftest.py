"""The real Ingress over fake handles, served by FastAPI's TestClient: each client talks to a replica of
its own, built as Serve builds one (`APIIngress(...)`, then `build_api`), with the test's deployment statuses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest
import ray
from starlette.testclient import TestClient

from serve_app.common.model_registry import ModelRegistry
from serve_app.config import BatchConfig, GatewayConfig, IngressConfig
from serve_app.http.ingress import APIIngress
from tests.fakes import FakeHandle
from tests.http.support import ASR, DETECTOR, LLM, asr, detector, llm  # noqa: F401 (the fake models' fixtures)

KEY_ENV = "TEST_SERVE_API_KEY"


@pytest.fixture(autouse=True)
def no_ray(monkeypatch) -> None:
    """Whatever a route reaches for, it is not a Ray cluster (a full run's session Ray is already up)."""
    monkeypatch.setattr(ray, "init", lambda *_a, **_k: pytest.fail("tests/http must not start Ray"))


@pytest.fixture()
def backends(llm, asr, detector) -> dict[str, Any]:  # noqa: F811 (pytest passes the fixtures by name)
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
    """`serve_ingress(models, services, api_key=, gateway=, llm_adapters=, user_config=, pipeline_llms=, batch=,
    unhealthy={deployment: status}, **IngressConfig fields)` -> a client of its own replica (`client.replica`)."""
    clients = ExitStack()

    def start(models: dict, services: dict | None = None, *, api_key: str | None = None, unhealthy=None,
              gateway: GatewayConfig | None = None, llm_adapters=None, user_config=None, pipeline_llms=None,
              batch: BatchConfig | None = None, **ingress: Any) -> TestClient:  # fmt: skip
        if api_key is not None:
            monkeypatch.setenv(KEY_ENV, api_key)
            ingress["api_key_env"] = KEY_ENV
        registry = ModelRegistry({kind: dict(by_name) for kind, by_name in models.items()}, dict(llm_adapters or {}))
        handles = [h for by_name in models.values() for h in by_name.values()] + list((services or {}).values())
        statuses = {h.deployment_name: "HEALTHY" for h in handles} | (unhealthy or {})
        config = IngressConfig(**ingress)
        replicas = {name: 1 for name in statuses}  # one running replica of each, as Serve would count them
        replica = APIIngress(
            registry, services or {}, config, gateway, pipeline_llms, batch,
            statuses=lambda: statuses, replicas=lambda: replicas,
        )  # fmt: skip
        if user_config is not None:
            replica.reconfigure(user_config)
        # The client sees what an HTTP client would: a 500 envelope, not the server's traceback.
        client = clients.enter_context(TestClient(replica.build_api(), raise_server_exceptions=False))
        client.replica = replica
        return client

    with clients:
        yield start


@pytest.fixture()
def client(serve_ingress, backends) -> TestClient:
    return serve_ingress(**backends)
