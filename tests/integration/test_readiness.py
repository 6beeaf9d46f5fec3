"""A model that breaks inside a running replica: its check_health fails, /ready goes false, Serve replaces it.

It runs on the session app, whose Detector is checked every second for the test (Serve changes that
in place). Nothing else in the app is changed: the fault is injected into the live
replica from outside (Ray's `__ray_call__` runs a function on the actor), the way a
wedged CUDA context or a lost engine would leave a replica that still answers RPCs.
"""

from __future__ import annotations

import base64
import time

import httpx
import pytest
import ray
from ray import serve

from tests import serve_harness
from tests.images import png

pytestmark = pytest.mark.slow

APP = "default"  # the session app: a health check every 1 s is a lightweight change, no copy needed


def _fast_detector_health_checks(app: dict) -> None:
    serve_harness.deployment_options(app, "Detector").update(health_check_period_s=1, health_check_timeout_s=10)


@pytest.fixture(scope="module")
def readiness_app(local_app):
    with serve_harness.reconfigured(_fast_detector_health_checks):
        yield local_app


def _detector_replicas() -> list[str]:
    return [a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if f"{APP}#Detector#" in a["name"]]


def _detector_replica() -> str:
    names = _detector_replicas()
    assert len(names) == 1, names
    return names[0]


def _replaced(broken: str) -> bool:
    """One Detector replica again, not the broken one (while it stops, both are listed)."""
    names = _detector_replicas()
    return len(names) == 1 and names[0] != broken


def _unload_model(replica_actor) -> None:
    detector = replica_actor._replica_impl._user_callable_wrapper.user_callable
    detector._model = None


def _wait_for(condition, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout_s}s: {what}")


def test_a_broken_model_turns_ready_false_and_its_replica_is_replaced(readiness_app):
    client = httpx.Client(base_url=readiness_app, timeout=30)
    detect = {"model": "tiny-yolov8n", "image": base64.b64encode(png()).decode()}
    assert client.get("/ready").status_code == 200
    assert client.post("/v1/detections", json=detect).status_code == 200
    broken = _detector_replica()

    ray.get(ray.get_actor(broken, namespace="serve").__ray_call__.remote(_unload_model))

    def not_ready():
        reply = client.get("/ready")
        return reply.json()["problems"] if reply.status_code == 503 else None

    problems = _wait_for(not_ready, 60, "/ready answering 503 after the Detector's model broke")
    assert any("Detector" in p for p in problems), problems

    _wait_for(lambda: _replaced(broken), 120, "a new Detector replica")
    _wait_for(lambda: client.get("/ready").status_code == 200, 120, "/ready answering 200 again")
    assert serve.status().applications[APP].deployments["Detector"].status == "HEALTHY"
    assert client.post("/v1/detections", json=detect).status_code == 200
