"""Deploys Serve config files in-process the way `serve run CONFIG` does.

`serve run` validates the YAML into a ServeDeploySchema and hands it to the
controller (`ray.serve.scripts.run`); the tests do the same, so the YAML's
`deployments:` options are applied by Serve itself, exactly as in production.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def load_config(name: str) -> dict:
    return yaml.safe_load((REPO / "configs" / name).read_text())


def start_serve(port: int) -> None:
    from ray.serve._private import api as serve_api

    serve_api.serve_start(http_options={"host": "127.0.0.1", "port": port}, proxy_location="HeadOnly")


def submit_apps(apps: list[dict]) -> None:
    """Apply a declarative set of applications (apps not listed are deleted), without waiting."""
    from ray.serve.context import _get_global_client
    from ray.serve.schema import ServeDeploySchema

    _get_global_client().deploy_apps(ServeDeploySchema.model_validate({"applications": apps}))


def deploy_apps(apps: list[dict], timeout_s: float = 300) -> None:
    """Apply a declarative set of applications (apps not listed are deleted) and wait."""
    submit_apps(apps)
    deadline = time.monotonic() + timeout_s
    _wait_applied(apps, timeout_s)
    wait_running({app["name"] for app in apps}, max(deadline - time.monotonic(), 1.0))


def _wait_applied(apps: list[dict], timeout_s: float) -> None:
    """Until each running deployment's target is the options just sent.

    A redeploy with the same code changes a running app in place, and until Serve's control loop
    has taken the new options the app still reads RUNNING with the old ones: waiting for RUNNING
    alone would return before the change.
    """
    from ray.serve.context import _get_global_client
    from ray.serve.schema import ServeInstanceDetails

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        details = ServeInstanceDetails(**_get_global_client().get_serve_details())
        pending = [
            f"{app['name']}/{options['name']}"
            for app in apps
            if app["name"] in details.applications
            for options in app.get("deployments", [])
            if (live := details.applications[app["name"]].deployments.get(options["name"])) is not None
            and not _contains(live.deployment_config.model_dump(mode="json"), options)
        ]
        if not pending:
            return
        time.sleep(0.2)
    raise TimeoutError(f"Serve did not take the new options within {timeout_s}s: {pending}")


def _contains(live: object, wanted: object) -> bool:
    # Keys Serve does not report back (deprecated ones) cannot be compared: they do not hold the wait.
    if isinstance(wanted, dict):
        return isinstance(live, dict) and all(k not in live or _contains(live[k], v) for k, v in wanted.items())
    return live == wanted


def deploy_beside(app: dict, timeout_s: float = 300) -> None:
    """Deploy one application next to those already running, leaving them as they are.

    `deploy_apps` replaces the whole set: the running apps are passed back with the config
    they were deployed with, so Serve sees them unchanged and does not restart them.
    """
    from ray.serve.context import _get_global_client
    from ray.serve.schema import ServeInstanceDetails

    details = ServeInstanceDetails(**_get_global_client().get_serve_details())
    running = [
        a.deployed_app_config.model_dump(mode="json", exclude_unset=True)
        for name, a in details.applications.items()
        if name != app["name"] and a.deployed_app_config is not None
    ]
    deploy_apps([*running, app], timeout_s)


@contextmanager
def beside(app: dict, timeout_s: float = 300) -> Iterator[dict]:
    """`app` deployed next to the running applications for the block, then deleted to free its replicas."""
    from ray import serve

    # Deleted on a failed or timed-out deploy too: a half-deployed app left behind would hold its
    # replicas' CPUs and starve every later test of the session.
    try:
        deploy_beside(app, timeout_s)
        yield app
    finally:
        serve.delete(app["name"])


@contextmanager
def reconfigured(edit: Callable[[dict], None], timeout_s: float = 300) -> Iterator[None]:
    """The session's `default` app (configs/local.yaml) redeployed with `edit` for the block, then restored.

    Serve changes queue limits, back-pressure and health-check options in place, without restarting
    replicas; an edit of `ray_actor_options` or `args` restarts the deployments it touches, and only those.
    Either way no test pays for a copy of the app.
    """
    try:
        deploy_beside(application("local.yaml", edit=edit), timeout_s)
        yield
    finally:
        deploy_beside(application("local.yaml"), timeout_s)


def wait_running(names: set[str], timeout_s: float) -> None:
    from ray import serve

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        apps = serve.status().applications
        states = {name: apps[name].status if name in apps else "MISSING" for name in names}
        failed = {n: apps[n].message for n, s in states.items() if s == "DEPLOY_FAILED"}
        if failed:
            raise RuntimeError(f"deploy failed: {failed}")
        if all(s == "RUNNING" for s in states.values()):
            return
        time.sleep(0.5)
    waiting = {
        f"{n}/{d}": (status.status, status.replica_states, status.message)
        for n in names
        if n in apps and apps[n].status != "RUNNING"
        for d, status in apps[n].deployments.items()
        if status.status != "HEALTHY"
    }
    raise TimeoutError(f"applications not running after {timeout_s}s: {states}; waiting on {waiting}")


def application(
    config_name: str,
    *,
    name: str | None = None,
    route_prefix: str | None = None,
    edit: Callable[[dict], None] | None = None,
) -> dict:
    """The config file's first application, with test-specific edits."""
    app = copy.deepcopy(load_config(config_name)["applications"][0])
    app["args"]["model_store"] = str(REPO / "models")
    app["args"]["data_dir"] = str(REPO / "data")
    if name:
        app["name"] = name
        _own_qdrant(app, REPO / "data" / f"qdrant-{name}")
    if route_prefix:
        app["route_prefix"] = route_prefix
    if edit:
        edit(app)
    return app


def _own_qdrant(app: dict, path: Path) -> None:
    # Embedded Qdrant lets one process open a directory: a second app beside `default` needs its own.
    qdrant = (app["args"].get("vision") or {}).get("qdrant")
    if qdrant is not None and not qdrant.get("url"):
        qdrant["path"] = str(path)


def config_copy(config: str | Path, workdir: Path, edit: Callable[[dict], None] | None = None) -> Path:
    """A config file (a path, or a name under configs/) with its embedded Qdrant moved into `workdir`.

    For a second Serve beside the test app or a `make serve` (which holds data/qdrant). `edit`
    changes each application as `application(edit=...)` does.
    """
    path = next(p for p in (Path(config), REPO / config, REPO / "configs" / config) if p.is_file())
    loaded = yaml.safe_load(path.read_text())
    for app in loaded["applications"]:
        _own_qdrant(app, Path(workdir) / f"qdrant-{app['name']}")
        if edit:
            edit(app)
    copy_path = Path(workdir) / f"copy-{path.name}"
    copy_path.write_text(yaml.safe_dump(loaded))
    return copy_path


def deployment_options(app: dict, name: str) -> dict:
    return next(d for d in app["deployments"] if d["name"] == name)


def one_llm(app: dict) -> None:
    """An `edit` for `application`: the first of `llms` alone (its adapters kept), without the traffic
    table, whose aliases name the others."""
    app["args"]["llms"] = app["args"]["llms"][:1]
    dropped = {d["name"] for d in app["deployments"] if d["name"].startswith("LLM-")}
    app["deployments"] = [d for d in app["deployments"] if d["name"] not in dropped]
    for options in app["deployments"]:
        if options["name"] == "Ingress":
            options.pop("user_config", None)


def first_llm_name(app: dict) -> str:
    return app["args"]["llms"][0]["served_name"]


def llm_only(app: dict) -> None:
    """An `edit` for `application`: just the Ingress and the first LLM (two replicas, ~2 GB less than the full app)."""
    one_llm(app)
    for section in ("speech", "video_summary", "vision", "batch"):
        app["args"].pop(section, None)
    app["deployments"] = [d for d in app["deployments"] if d["name"] in ("Ingress", "LLM")]
