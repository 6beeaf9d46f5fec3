"""Session fixtures: one Ray instance (with one declared GPU) and the local app on it.

Ray is told a GPU exists so the prod.yaml resource plan can be scheduled exactly
as on a real card; replicas still see no CUDA device, so engines run on CPU.
"""

from __future__ import annotations

import pytest

from serve_app.tools.launch import free_port, set_ray_environment
from tests import serve_harness

# Before Serve's modules load here: this process's handles read it too.
set_ray_environment()

LOCAL_MODEL = "tiny-qwen2"


def long_story(max_tokens: int) -> dict:
    """A chat request that keeps the tiny LLM busy: with seed 1 it samples no end marker on this
    prompt for hundreds of tokens, so it runs to `max_tokens` (test_disconnect checks it)."""
    return {
        "model": LOCAL_MODEL,
        "messages": [{"role": "user", "content": "Tell me a long story."}],
        "max_tokens": max_tokens,
        "seed": 1,
    }


class SessionServe:
    """The session's Ray and Serve, and configs/local.yaml on them as the `default` app.

    The app takes a minute or more to load on 2 cores. It is submitted as soon as collection shows
    a test needs it, and loads while the unit and HTTP tests (collected first) run; `local_app`
    then only waits for it. A run of unit tests alone never starts Ray.
    """

    def __init__(self) -> None:
        self.base_url: str | None = None
        self.metrics_port: int | None = None  # Ray's per-node Prometheus exporter (tests/e2e/test_metrics.py)
        self.app_submitted = False
        self.models_built = False

    def build_models(self) -> None:
        if not self.models_built:
            from serve_app.tools.tiny_models import build_all

            build_all(serve_harness.REPO / "models")
            self.models_built = True

    def start(self) -> str:
        if self.base_url is None:
            import ray

            self.build_models()
            # 20 logical CPUs: prod.yaml's plan (15 CPUs at min_replicas, `make test-heavy`) must
            # schedule, and the gateway's app beside it; Ray's CPU counts are bookkeeping, the 2 real
            # cores are shared.
            # address="local": always a fresh instance, never a cluster `ray start` (or a multi-node
            # test's simulated cluster) left in /tmp/ray/ray_current_cluster, which ray.init() would join.
            # Metrics are exported every second (Ray's default is 10 s), so metric tests wait less.
            self.metrics_port = free_port()
            ray.init(
                address="local",
                num_cpus=20,
                num_gpus=1,
                include_dashboard=False,
                namespace="serve",
                _metrics_export_port=self.metrics_port,
                _system_config={"metrics_report_interval_ms": 1000},
            )
            port = free_port()
            serve_harness.start_serve(port)
            self.base_url = f"http://127.0.0.1:{port}"
        return self.base_url

    def submit_app(self) -> None:
        if not self.app_submitted:
            self.start()
            serve_harness.submit_apps([serve_harness.application("local.yaml")])
            self.app_submitted = True

    def stop(self) -> None:
        if self.base_url is not None:
            import ray
            from ray import serve

            serve.shutdown()
            ray.shutdown()
            self.base_url = None


SESSION = SessionServe()


def pytest_collection_finish(session: pytest.Session) -> None:
    if session.config.option.collectonly:
        return
    if any("local_app" in item.fixturenames for item in session.items):
        SESSION.submit_app()


def pytest_sessionfinish(session: pytest.Session) -> None:
    SESSION.stop()


@pytest.fixture(scope="session")
def tiny_models() -> None:
    SESSION.build_models()


@pytest.fixture(scope="session")
def serve_http() -> str:
    """Serve with its HTTP proxy on a free port; yields the base URL."""
    return SESSION.start()


@pytest.fixture(scope="session")
def local_app(serve_http) -> str:
    """configs/local.yaml deployed as the `default` app; yields the HTTP base URL."""
    SESSION.submit_app()
    serve_harness.wait_running({"default"}, timeout_s=300)
    return serve_http


@pytest.fixture()
def openai_client(local_app):
    from openai import OpenAI

    return OpenAI(base_url=f"{local_app}/v1", api_key="unused", max_retries=0, timeout=60)
