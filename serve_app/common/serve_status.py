"""One application's status and its deployments' statuses, as Serve's controller reports them, cheaply.

`serve.status()` asks the controller for every application's full details (each deployment's whole
config, its request router's class pickled again) and validates them all in the caller: py-spy of a
cold start put most of the Ingress's CPU in it, read by every `/ready` poll while the replicas
loaded on the same cores. The controller's `get_serve_status` answers for one application with its
statuses alone (what `serve status` prints), through the same client `serve.status()` uses: Ray
Serve's private API, pinned with Ray (requirements.lock), covered by the integration tests.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AppStatus:
    status: str  # RUNNING, DEPLOYING, ..., NOT_STARTED when no such application
    deployments: dict[str, str]  # deployment name -> HEALTHY, UPDATING, UNHEALTHY, ...


def app_status(app_name: str) -> AppStatus:
    """Blocking (one controller call): run it in a thread from async code."""
    from ray.serve.context import _get_global_client

    overview = _get_global_client().get_serve_status(app_name)
    return AppStatus(
        status=overview.app_status.status.value,
        deployments={d.name: d.status.value for d in overview.deployment_statuses},
    )
