"""Session fixtures: one Ray instance (with one declared GPU) and the local app on it.

Ray is told a GPU exists so the prod.yaml resource plan can be scheduled exactly
as on a real card; replicas still see no CUDA device, so engines run on CPU.
"""

from __future__ import annotations

import os

import pytest

from serve_app.launch import free_port
from tests import serve_harness

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

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


@pytest.fixture(scope="session")
def tiny_models() -> None:
    from serve_app.tiny_models import build_all

    build_all(serve_harness.REPO / "models")


@pytest.fixture(scope="session")
def ray_session(tiny_models):
    import ray
    from ray import serve

    # 20 logical CPUs: prod.yaml's plan (15 CPUs at min_replicas) must schedule next to
    # local.yaml's; Ray's CPU counts are bookkeeping, the 2 real cores are shared.
    # address="local": always a fresh instance, never a cluster `ray start` (or a multi-node
    # test's simulated cluster) left in /tmp/ray/ray_current_cluster, which ray.init() would join.
    ray.init(address="local", num_cpus=20, num_gpus=1, include_dashboard=False, namespace="serve")
    yield
    serve.shutdown()
    ray.shutdown()


@pytest.fixture(scope="session")
def serve_http(ray_session) -> str:
    """Serve with its HTTP proxy on a free port, no app yet; yields the base URL."""
    port = free_port()
    serve_harness.start_serve(port)
    return f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def local_app(serve_http) -> str:
    """configs/local.yaml deployed as the `default` app; yields the HTTP base URL."""
    serve_harness.deploy_apps([serve_harness.application("local.yaml")])
    return serve_http


@pytest.fixture()
def openai_client(local_app):
    from openai import OpenAI

    return OpenAI(base_url=f"{local_app}/v1", api_key="unused", max_retries=0, timeout=60)
