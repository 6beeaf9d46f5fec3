"""`serve run CONFIG`, with the Ray instance this machine needs and a clear ready line.

`serve run` starts Ray with the dashboard on, and no Serve config key turns it
off. Ray is started here first (dashboard off unless asked, usage stats off), then
Serve's own `run` command takes over unchanged: it sees Ray running and reuses it,
deploys the file, and on Ctrl-C shuts Serve and this Ray down.

Metrics: Ray's per-node agent exports every metric (Ray's, Serve's, serve_app.common.metrics') in
Prometheus' format on one port, fixed here so a scrape config can name it: `SERVE_METRICS_PORT`,
default 9464. The agent runs with the dashboard off too: it is the raylet's, not the dashboard's.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import yaml

SERVE_NAMESPACE = "serve"  # what `serve run` and Serve's handles use
METRICS_PORT_ENV = "SERVE_METRICS_PORT"
# Not Ray's default (a random port) and clear of the usual 8000/8080/9090 (Serve, proxies, Prometheus).
DEFAULT_METRICS_PORT = 9464
# What every Ray process of the platform starts with. Serve reads these when its modules load, in
# the controller, the proxies and each replica, so they must be in the environment Ray starts from
# (`make serve`, the tests, the image, the KubeRay manifest), never set later by a config.
# gRPC from the proxy to the Ingress and between deployments, instead of Ray actor calls: Ray
# Serve's throughput-optimised transport. benchmarks/llm_batching.py on 2 cores: 1.47x the
# streamed tokens/s at 16 concurrent requests (548 -> 808), TTFT p50 at 16 197 -> 122 ms.
# A request's body crosses to the Ingress as one gRPC message, and media cross to the models the
# same way: gRPC's default cap of 4 MiB would turn every upload above it into a 500. The ingress's
# own limits (ingress.max_upload_bytes, 413 past them) are what bound a request.
# Ray starts its workers at nice 15, below its own daemons and below whatever else the host runs: on
# a shared host (a laptop, a node with a client or a sidecar beside Serve) the replicas then lose
# every contest for a core. At nice 0 they share it as equals. (`benchmarks/serving_path.py` on 2
# cores, its client beside the server: together with the engine's batching and the Ingress's
# same-loop routing, 16 streams went from 932 to 1,212 tok/s; a lone stream 258 to 269, in the noise.)
# HAProxy in front of the Ingress replicas instead of Serve's Python proxy (Ray's direct ingress): the
# Ingress serves HTTP itself, one Ray hop and one process's per-request work fewer. Same benchmark,
# same server otherwise: 16 streams 1,417 -> 1,950 tok/s, TTFT p50 at 16 84 -> 38 ms; a lone stream
# 310 -> 382. A replica that stops stays reachable for the drain period so HAProxy can drop it: 2 s,
# not Serve's 30 (meant for cloud load balancers, which here sit in front of HAProxy, not replicas).
# The proxy actors get 30 s to say they are ready, not 5: HAProxy's manager and its fallback proxy
# start beside every replica's imports, and on 2 busy cores (two Rays starting at once) took longer;
# the controller then killed the manager and `serve run` died on the dead actor.
RAY_ENVIRONMENT = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_worker_niceness": "0",
    "RAY_SERVE_USE_GRPC_BY_DEFAULT": "1",
    "RAY_SERVE_REPLICA_GRPC_MAX_MESSAGE_LENGTH": str(2**31 - 1),
    "RAY_SERVE_ENABLE_HA_PROXY": "1",
    "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "2",
    "RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S": "30",
}


# Serve's HAProxy ingress also listens on fixed side ports of its own (HAProxy's stats page and
# Prometheus exporter, the fallback proxy's HTTP and gRPC): a second Ray on the same host (the tests
# beside `make serve`, a benchmark's server) could not start its HAProxy on them. Unset, each Ray
# started from here (`serve_app run`, the image, tests, benchmarks) gets free ones; a Ray started
# otherwise (KubeRay's `ray start`) keeps Serve's defaults. Nothing scrapes them: the app's and
# HAProxy's request metrics go out through Ray's exporter on SERVE_METRICS_PORT.
SIDE_PORTS = (
    "RAY_SERVE_HAPROXY_STATS_PORT",
    "RAY_SERVE_HAPROXY_METRICS_PORT",
    "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT",
    "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT",
)


# "<pid> <names>": which process picked which side ports. A child that starts a Ray of its own (a
# test's `serve_app run`, a benchmark's cluster) inherits them with the environment, while its parent's
# Ray still holds them: it picks again. A port the operator set is never in the list.
PICKED_PORTS_ENV = "SERVE_APP_PICKED_PORTS"


def set_ray_environment() -> None:
    """RAY_ENVIRONMENT and free SIDE_PORTS into this process's environment, which Ray's processes
    inherit; an operator's own setting of any of them wins."""
    for name, value in RAY_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    owner, _, names = os.environ.get(PICKED_PORTS_ENV, "").partition(" ")
    if owner == str(os.getpid()):
        return
    parents = set(names.split(",")) if owner else set()
    picked = [name for name in SIDE_PORTS if name not in os.environ or name in parents]
    for name in picked:
        os.environ[name] = str(free_port())
    os.environ[PICKED_PORTS_ENV] = f"{os.getpid()} {','.join(picked)}"


def run(config_path: str, *, dashboard: bool = False) -> None:
    started = time.monotonic()
    metrics_port = metrics_export_port()
    set_ray_environment()
    _stop_on_signals()
    import ray
    from ray.serve.scripts import cli

    # address="local": a fresh instance even when this host runs a `ray start` cluster, which a bare
    # ray.init() would join (deploy to a cluster with `serve deploy` instead).
    context = ray.init(
        address="local", namespace=SERVE_NAMESPACE, include_dashboard=dashboard, _metrics_export_port=metrics_port
    )
    metrics_url = f"http://{context.address_info['node_ip_address']}:{metrics_port}/metrics"
    announce = (_base_url(config_path), context.address_info["gcs_address"], metrics_url, started)
    threading.Thread(target=_announce_when_ready, args=announce, daemon=True).start()
    cli.main(["run", config_path], prog_name="serve")


def _stop_on_signals() -> None:
    """Ctrl-C and SIGTERM (docker stop, Kubernetes) both take `serve run`'s clean shutdown path.

    SIGINT is restored too: a shell that starts us in the background ignores it.
    """

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, interrupt)


def _base_url(config_path: str) -> str:
    with open(config_path) as f:
        http = (yaml.safe_load(f) or {}).get("http_options") or {}
    host = http.get("host", "127.0.0.1")
    host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    return f"http://{host}:{http.get('port', 8000)}"


def metrics_export_port() -> int:
    """The port from `SERVE_METRICS_PORT` (default 9464), checked free now: Ray's agent would fail on it later."""
    raw = os.environ.get(METRICS_PORT_ENV, str(DEFAULT_METRICS_PORT))
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise SystemExit(f"{METRICS_PORT_ENV}={raw!r}: expected a TCP port number")
    port = int(raw)
    with socket.socket() as s:
        # As Ray's exporter binds it: a port whose last connections linger in TIME_WAIT is free.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("", port))
        except OSError as exc:
            raise SystemExit(
                f"the metrics port {port} is taken ({exc.strerror}); set {METRICS_PORT_ENV} to a free port"
            ) from None
    return port


def _announce_when_ready(
    base_url: str, ray_address: str, metrics_url: str, started: float, poll_s: float = 1.0
) -> None:
    while True:
        try:
            with urllib.request.urlopen(f"{base_url}/ready", timeout=5) as reply:
                if reply.status == 200:
                    break
        except OSError:
            pass
        time.sleep(poll_s)
    print(
        f"\nREADY in {time.monotonic() - started:.1f}s: {base_url} (OpenAI base URL {base_url}/v1)"
        f"\nMetrics (Prometheus): {metrics_url}"
        f"\nPython handles (with RAY_AUTH_MODE=token exported): "
        f"ray.init(address={ray_address!r}, namespace={SERVE_NAMESPACE!r})"
        "\nCtrl-C stops.\n",
        flush=True,
    )


def spawn(config_path: str | Path, *, port: int, cwd: Path, workdir: Path, stdout) -> subprocess.Popen:
    """Start `python -m serve_app run` in a child process, on a copy of the config moved to `port`.

    For tests and benchmarks that run the real command beside a server that may
    already hold the config's own port (and the metrics port: the child gets a free one).
    Relative paths in the config resolve against `cwd`.
    """
    config = yaml.safe_load(Path(config_path).read_text())
    config["http_options"]["port"] = port
    moved = Path(workdir) / Path(config_path).name
    moved.write_text(yaml.safe_dump(config))
    return subprocess.Popen(
        [sys.executable, "-m", "serve_app", "run", str(moved)],
        cwd=cwd,
        stdout=stdout,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", METRICS_PORT_ENV: str(free_port())},
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
