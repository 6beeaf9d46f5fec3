"""Slim apps of configs/gateway.yaml for the e2e tests and the benchmark: Ingress, LLM, GatewayState.

`gateway_app` gives the app its own data dir (its own SQLite file, so it never shares one with a
`make serve`), the master key in its runtime env (replicas read it, not this process), and as
many Ingress replicas as asked: two show that limits hold across replicas.
"""

from __future__ import annotations

from pathlib import Path

from tests import serve_harness

KEEP = {"Ingress", "LLM", "GatewayState"}


def gateway_app(
    name: str, data_dir: Path, master_key: str, *, ingress_replicas: int = 2, gateway: dict | None = None
) -> dict:
    def slim(app: dict) -> None:
        serve_harness.one_llm(app)  # the second LLM would start with Serve's default of a whole CPU
        args = app["args"]
        for section in ("speech", "video_summary", "vision", "batch"):
            args.pop(section, None)
        args["data_dir"] = str(data_dir)
        if gateway is not None:
            args["gateway"].update(gateway)
        app["deployments"] = [d for d in app["deployments"] if d["name"] in KEEP]
        serve_harness.deployment_options(app, "Ingress")["num_replicas"] = ingress_replicas
        app["runtime_env"] = {"env_vars": {"SERVE_MASTER_KEY": master_key}}

    return serve_harness.application("gateway.yaml", name=name, route_prefix=f"/{name}", edit=slim)


def open_app(name: str) -> dict:
    """The same slim app from configs/local.yaml: no gateway."""

    def slim(app: dict) -> None:
        serve_harness.llm_only(app)

    return serve_harness.application("local.yaml", name=name, route_prefix=f"/{name}", edit=slim)
