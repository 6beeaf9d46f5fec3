"""The two JSON routes the browser console needs beyond the public API: deployments' health, and metrics.

`/console/deployments`: each served model, adapter and alias with the deployment behind it, that
deployment's Serve status and running replicas (the Models page joins it with `/v1/models`).
`/console/metrics`: the Operations page's chart points (serve_app/http/ops_metrics.py), read from the
app's own Prometheus exporters by the Ingress, so the browser never talks to Ray's ports.

Both are authenticated like `/v1/models` and show only the models the caller's key may use. They
answer 404 when `ingress.console.enabled` is off.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from serve_app.errors import NotFound
from serve_app.http.app import AUTHENTICATED
from serve_app.http.auth import allowed_models
from serve_app.http.ops_metrics import OpsMetrics
from serve_app.http.routes.base import Backends
from serve_app.http.routing import get

ReplicaCounts = Callable[[], dict[str, int]]  # deployment name -> its RUNNING replicas


def serve_replica_counts() -> dict[str, int]:
    """What Serve reports of this replica's application: running replicas per deployment."""
    from ray import serve

    app = serve.status().applications.get(serve.get_replica_context().app_name)
    if app is None:
        return {}
    return {name: status.replica_states.get("RUNNING", 0) for name, status in app.deployments.items()}


class ConsoleRoutes(Backends):
    _ops: OpsMetrics
    _statuses: Callable[[], dict[str, str]]
    _replicas: ReplicaCounts

    def _console_on(self) -> None:
        if not self._config.console.enabled:
            raise NotFound("The console is off: set ingress.console.enabled in the config.", code="not_found")

    @get("/console/deployments", dependencies=AUTHENTICATED, include_in_schema=False)
    async def console_deployments(self) -> dict[str, Any]:
        self._console_on()
        allowed = allowed_models()
        statuses, replicas = await asyncio.gather(
            asyncio.to_thread(self._statuses), asyncio.to_thread(self._safe_replicas)
        )
        rows = []
        for kind, name, handle in self._models.items():
            if allowed is None or name in allowed:
                deployment = handle.deployment_name
                rows.append(
                    {
                        "id": name,
                        "kind": kind,
                        "deployment": deployment,
                        "status": statuses.get(deployment, "UNKNOWN"),
                        "replicas": replicas.get(deployment),
                    }
                )
        for alias in self._traffic.aliases:
            if allowed is None or alias.name in allowed:
                rows.append({"id": alias.name, "kind": "llm", "deployment": None, "status": "ALIAS", "replicas": None})
        return {"object": "list", "data": rows}

    def _safe_replicas(self) -> dict[str, int]:
        try:
            return self._replicas()
        except Exception:  # the counts are a nicety: the page shows "?" rather than failing
            return {}

    @get("/console/metrics", dependencies=AUTHENTICATED, include_in_schema=False)
    async def console_metrics(self) -> dict[str, Any]:
        self._console_on()
        allowed = allowed_models()
        return await self._ops.document(lambda model: allowed is None or model in allowed)
