"""Node loss under load: the app on a simulated Ray cluster, one GPU worker removed while requests run.

    python benchmarks/node_failure.py                         # head + 2 GPU workers, prints the report
    python benchmarks/node_failure.py --json out.json --before-s 8 --after-s 8
    python benchmarks/node_failure.py --vision-replicas 1    # Detector and CLIP on one node only
    python benchmarks/node_failure.py --vision-replicas 0    # the LLM alone (what the test runs)

The cluster is built in this process with `ray.cluster_utils.Cluster` (every node a set of Ray
processes on this machine, each with its own declared resources):
- head: no GPU, custom resource `ingress_host`; Serve's controller lives here, and the Ingress is
  pinned here by requiring a sliver of `ingress_host`. A custom resource, not a node label, because
  it is spelled the same way in `ray start --resources`, KubeRay's `rayStartParams` and Serve's
  `ray_actor_options.resources`, and Ray's scheduler enforces it like CPU or GPU.
- GPU workers: `num_gpus=1` each (declared, not real: replicas see no CUDA and run the CPU engines).
  The LLM, Detector and ClipEmbedder ask for GPU fractions, so they can only land there.
  Each runs two replicas, spread over the two workers by Serve's default SPREAD scheduling, and the
  fractions of all six add up to one card, so the surviving worker can hold them all.
  Two, not one, for Detector and CLIP too: Serve's router holds a request for a deployment with no live
  replica until one exists ("This will block indefinitely if no replicas are available", in
  ray/serve/_private/router.py), so a single replica on the lost node makes its requests wait out the
  whole rebuild. `--vision-replicas 1` shows it: those requests run into the client timeout.

Clients talk to the head's proxy only. With `proxy_location: EveryNode` each node runs a proxy; on a
real cluster a load balancer health-checks them and drops a dead node's. Here all nodes share one IP,
and with SO_REUSEPORT the kernel would spread connections over every node's proxy on one port, so
clients would also measure the death of the proxy on the removed node, an artefact of the simulation.
Worker proxies are therefore moved to their own port (RAY_SERVE_WORKER_PROXY_HTTP_PORT) and the
clients use the head's, the one proxy that outlives any worker.

Reported: requests sent / succeeded / failed (status codes and error kinds; a request that runs past
its timeout is counted as `timeout`: with two replicas per deployment that must never happen), time
from the start of the removal until `/ready` answers 200 AND every deployment has its target replicas
running on live nodes, and the replicas' placement before and after.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from serve_app.tools.launch import SERVE_NAMESPACE, free_port, set_ray_environment  # noqa: E402
from tests import serve_harness  # noqa: E402
from tests.images import png  # noqa: E402

INGRESS_RESOURCE = "ingress_host"
# Two, so the lost worker's replicas can be rebuilt on the survivor (memory here allows it;
# docs/operations.md, "Losing a node").
GPU_WORKERS = 2
GPU_DEPLOYMENTS = ("LLM", "Detector", "ClipEmbedder")
# One card's worth in all (2 x 0.3 + 2 x 0.1 + 2 x 0.1), so the surviving worker can take every replica.
GPU_FRACTIONS = {"LLM": 0.3, "Detector": 0.1, "ClipEmbedder": 0.1}


@dataclass
class Outcome:
    kind: str
    started: float  # seconds since the clients started
    ended: float
    status: int | None  # HTTP status, None when no response came back
    error: str | None  # connection / timeout / other, when no response came back


def main() -> None:
    args = _args()
    _stop_on_signals()
    set_ray_environment()
    # Three proxies start at once on a 2-core host that is busy (the test suite runs this beside its
    # own app): Serve's 5 s proxy readiness check would declare them dead before they bind their port.
    os.environ.setdefault("RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S", "30")
    # Cluster writes its address to <ray temp dir>/ray_current_cluster, where any plain `ray.init()` on this
    # machine (another test session, `make serve`) would find it and join this cluster instead of starting
    # its own: a private temp dir keeps the cluster, its sessions and that file to this run.
    temp_root = Path(tempfile.mkdtemp(prefix="nf-", dir="/tmp"))  # short: Ray's socket paths must fit 107 chars
    os.environ["RAY_TMPDIR"] = str(temp_root)
    head_port = free_port()
    # Read by each worker node's proxy (the head's is exempt): see the module docstring.
    os.environ["RAY_SERVE_WORKER_PROXY_HTTP_PORT"] = str(free_port())
    from ray.cluster_utils import Cluster

    started = time.monotonic()
    cluster = Cluster()
    try:
        cluster.add_node(
            num_cpus=2,
            num_gpus=0,
            resources={INGRESS_RESOURCE: 1},
            include_dashboard=True,  # ray.util.state (placement) asks the dashboard
            dashboard_port=free_port(),
        )
        report = _run(cluster, head_port, args, started)
    finally:
        _teardown(cluster)
        shutil.rmtree(temp_root, ignore_errors=True)
    _print_report(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=6, help="client threads (chat, detections, embeddings)")
    parser.add_argument("--before-s", type=float, default=15, help="load before the removal")
    parser.add_argument("--after-s", type=float, default=15, help="load after recovery")
    parser.add_argument("--recovery-timeout-s", type=float, default=300)
    parser.add_argument(
        "--vision-replicas",
        type=int,
        default=2,
        choices=(0, 1, 2),
        help="Detector and CLIP replicas; with 1, requests queue while the lost one is rebuilt; "
        "with 0 neither is deployed (the LLM alone: one replica to rebuild, a quicker run)",
    )
    parser.add_argument("--request-timeout-s", type=float, default=30)
    parser.add_argument("--json", help="write the report here too")
    return parser.parse_args()


def _stop_on_signals() -> None:
    # SIGTERM (a test's timeout, docker stop) takes the same path as Ctrl-C, so the cluster is torn down.
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def _run(cluster, head_port: int, args: argparse.Namespace, started: float) -> dict:
    import ray

    workers = [_add_gpu_worker(cluster) for _ in range(GPU_WORKERS)]
    ray.init(address=cluster.address, namespace=SERVE_NAMESPACE)
    from ray.serve._private import api as serve_api

    serve_api.serve_start(http_options={"host": "127.0.0.1", "port": head_port}, proxy_location="EveryNode")
    app = serve_harness.application("local.yaml", edit=lambda a: _slim(a, args.vision_replicas))
    serve_harness.deploy_apps([app], timeout_s=300)
    base_url = f"http://127.0.0.1:{head_port}"
    _wait_ready(base_url, 120)
    targets = {d["name"]: d["num_replicas"] for d in app["deployments"]}
    report: dict = {
        "gpu_workers": GPU_WORKERS,
        "vision_replicas": args.vision_replicas,
        "head_node_id": cluster.head_node.node_id,
        "deploy_s": round(time.monotonic() - started, 1),
        "targets": targets,
        "nodes": _nodes(),
        "placement_before": _placement(),
    }
    victim = _node_to_remove(workers, report["placement_before"])
    report["removed_node_id"] = victim.node_id

    load = Load(base_url, app["args"], args.clients, args.request_timeout_s)
    load.start()
    time.sleep(args.before_s)
    removal_started = load.now()
    cluster.remove_node(victim)
    report["remove_node_call_s"] = round(load.now() - removal_started, 2)
    recovered, timeline = _wait_recovered(base_url, targets, victim.node_id, load, args.recovery_timeout_s)
    report["recovered"] = recovered is not None
    report["recovery_s"] = round(recovered - removal_started, 2) if recovered is not None else None
    report["recovery_timeline"] = timeline
    time.sleep(args.after_s)
    outcomes = load.stop()
    report["placement_after"] = _placement()
    report["requests"] = _summarise(outcomes, removal_started, recovered)
    report["request_timeout_s"] = args.request_timeout_s
    return report


def _add_gpu_worker(cluster):
    return cluster.add_node(num_cpus=2, num_gpus=1)


def _slim(app: dict, vision_replicas: int) -> None:
    """local.yaml with only the LLM, Detector and CLIP (or the LLM alone), GPU fractions, the Ingress on the head."""
    serve_harness.one_llm(app)
    args = app["args"]
    for key in ("speech", "video_summary", "batch"):
        args.pop(key, None)
    vision = args.pop("vision")
    if vision_replicas:
        args["vision"] = {
            "max_image_bytes": vision["max_image_bytes"],
            "max_image_pixels": vision["max_image_pixels"],
            "detector": vision["detector"],
            "clip": vision["clip"],
        }
    kept = []
    for deployment in app["deployments"]:
        name = deployment["name"]
        if name == "Ingress":
            deployment["ray_actor_options"] = {"num_cpus": 0.25, "resources": {INGRESS_RESOURCE: 0.01}}
        elif name == "LLM" or (name in GPU_FRACTIONS and vision_replicas):
            deployment["ray_actor_options"] = {"num_cpus": 0.25, "num_gpus": GPU_FRACTIONS[name]}
            deployment.pop("autoscaling_config", None)  # a fixed count: the test spreads exactly two
            deployment["num_replicas"] = 2 if name == "LLM" else vision_replicas
        else:
            continue
        kept.append(copy.deepcopy(deployment))
    app["deployments"] = kept


def _wait_ready(base_url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if _ready(base_url):
            return
        time.sleep(0.5)
    raise TimeoutError(f"{base_url}/ready not 200 after {timeout_s}s")


def _ready(base_url: str) -> bool:
    try:
        return httpx.get(f"{base_url}/ready", timeout=10).status_code == 200
    except httpx.HTTPError:
        return False


def _nodes() -> list[dict]:
    from ray.util.state import list_nodes

    return [
        {
            "node_id": n.node_id,
            "state": n.state,
            "is_head": n.is_head_node,
            "resources": {k: v for k, v in n.resources_total.items() if not k.startswith(("node:", "memory"))},
        }
        for n in list_nodes(detail=True)
        if n.state == "ALIVE"
    ]


def _placement() -> list[dict]:
    """Every live Serve replica: deployment, node, the resources it holds."""
    from ray.util.state import list_actors

    actors = list_actors(filters=[("state", "=", "ALIVE")], detail=True, limit=1000)
    placed = []
    for actor in actors:
        # Replica actors are named SERVE_REPLICA::<app>#<deployment>#<replica id>.
        if not (actor.name or "").startswith("SERVE_REPLICA::"):
            continue
        deployment = actor.name.split("::", 1)[1].split("#")[1]
        resources = {k: v for k, v in (actor.required_resources or {}).items() if not k.startswith("node:")}
        placed.append({"deployment": deployment, "node_id": actor.node_id, "resources": resources})
    return sorted(placed, key=lambda p: (p["deployment"], p["node_id"]))


def _node_to_remove(workers: list, placement: list[dict]):
    # The worker holding the most replicas (at least one LLM replica): the hardest loss.
    def weight(node) -> tuple[int, int]:
        here = [p for p in placement if p["node_id"] == node.node_id]
        return (any(p["deployment"] == "LLM" for p in here), len(here))

    return max(workers, key=weight)


def _wait_recovered(base_url: str, targets: dict, lost_node: str, load: Load, timeout_s: float):
    """(time recovered or None, a timeline of what the app looked like while recovering)."""
    from ray import serve

    timeline: list[dict] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ready = _ready(base_url)
        deployments = serve.status().applications["default"].deployments
        running = {name: deployments[name].replica_states.get("RUNNING", 0) for name in targets}
        placed = Counter(p["deployment"] for p in _placement() if p["node_id"] != lost_node)
        at = load.now()
        snapshot = {"ready": ready, "running": running}
        if not timeline or {k: timeline[-1][k] for k in snapshot} != snapshot:
            timeline.append({"t": round(at, 2), **snapshot})
        # Serve may still count a dead replica as RUNNING for a moment: also require live actors on live nodes.
        if ready and all(running[n] == t and placed[n] == t for n, t in targets.items()):
            return at, timeline
        time.sleep(0.5)
    return None, timeline


class Load:
    """Client threads, each sending one kind of request back to back until stopped."""

    def __init__(self, base_url: str, app_args: dict, clients: int, timeout_s: float):
        self._base_url = base_url
        self._timeout_s = timeout_s
        self._llm = app_args["llms"][0]["served_name"]
        vision = app_args.get("vision")
        self._detector = vision["detector"]["served_name"] if vision else None
        self._clip = vision["clip"]["served_name"] if vision else None
        kinds = ("chat", "detection", "embedding") if vision else ("chat",)
        self._image = png()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._outcomes: list[Outcome] = []
        self._t0 = time.monotonic()
        self._threads = [
            threading.Thread(target=self._client, args=(kinds[i % len(kinds)],), daemon=True) for i in range(clients)
        ]

    def now(self) -> float:
        return time.monotonic() - self._t0

    def start(self) -> None:
        self._t0 = time.monotonic()
        for thread in self._threads:
            thread.start()

    def stop(self) -> list[Outcome]:
        self._stop.set()
        for thread in self._threads:
            thread.join(self._timeout_s + 5)
        with self._lock:
            return list(self._outcomes)

    def _client(self, kind: str) -> None:
        with httpx.Client(base_url=self._base_url, timeout=self._timeout_s) as client:
            while not self._stop.is_set():
                started = self.now()
                status = error = None
                try:
                    status = self._send(client, kind).status_code
                except httpx.TimeoutException:
                    error = "timeout"
                except httpx.TransportError as exc:
                    error = f"connection ({type(exc).__name__})"
                with self._lock:
                    self._outcomes.append(Outcome(kind, started, self.now(), status, error))
                if status != 200:
                    time.sleep(0.2)  # a failing client backs off a little, as an SDK with retries would

    def _send(self, client: httpx.Client, kind: str) -> httpx.Response:
        if kind == "chat":
            body = {"model": self._llm, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8}
            return client.post("/v1/chat/completions", json=body)
        if kind == "detection":
            files = {"image": ("scene.png", self._image, "image/png")}
            return client.post("/v1/detections", files=files, data={"model": self._detector, "max_det": "5"})
        return client.post("/v1/embeddings", json={"model": self._clip, "input": ["a red square"]})


def _summarise(outcomes: list[Outcome], removal_started: float, recovered: float | None) -> dict:
    def phase(o: Outcome) -> str:
        if o.started < removal_started:
            return "before" if o.ended < removal_started else "during"
        if recovered is None or o.started < recovered:
            return "during"
        return "after"

    failed = [o for o in outcomes if o.status != 200]
    by_phase: dict[str, Counter] = {}
    for o in outcomes:
        by_phase.setdefault(phase(o), Counter())["ok" if o.status == 200 else "failed"] += 1
    return {
        "sent": len(outcomes),
        "succeeded": len(outcomes) - len(failed),
        "failed": len(failed),
        "failures": dict(Counter(str(o.status) if o.status is not None else o.error for o in failed)),
        "by_phase": {p: dict(c) for p, c in by_phase.items()},
        "by_kind": {
            k: dict(Counter("ok" if o.status == 200 else "failed" for o in outcomes if o.kind == k))
            for k in sorted({o.kind for o in outcomes})
        },
        "max_latency_s": round(max((o.ended - o.started for o in outcomes), default=0), 2),
        "failed_requests": [asdict(o) for o in failed],
    }


def _teardown(cluster) -> None:
    import ray

    ray.shutdown()
    cluster.shutdown()


def _print_report(report: dict) -> None:
    short = {n["node_id"]: ("head " if n["is_head"] else "gpu  ") + n["node_id"][:8] for n in report["nodes"]}
    print(f"\ncluster: head + {report['gpu_workers']} GPU workers, up and deployed in {report['deploy_s']}s")
    for node in report["nodes"]:
        print(f"  node {short[node['node_id']]}  {node['resources']}")
    for title in ("placement_before", "placement_after"):
        print(f"{title.replace('_', ' ')}:")
        for p in report[title]:
            print(f"  {p['deployment']:<13} on {short.get(p['node_id'], p['node_id'][:8])}  {p['resources']}")
    requests = report["requests"]
    print(f"removed node {report['removed_node_id'][:8]} (remove_node took {report['remove_node_call_s']}s)")
    print(
        f"requests: {requests['sent']} sent, {requests['succeeded']} succeeded, {requests['failed']} failed "
        f"{requests['failures']}; by phase {requests['by_phase']}; slowest {requests['max_latency_s']}s"
    )
    if report["recovered"]:
        print(f"healthy again (/ready 200, every deployment at target) {report['recovery_s']}s after the removal")
    else:
        print("NOT healthy again within the recovery timeout")
    for step in report["recovery_timeline"]:
        print(f"  t={step['t']:>7}s ready={step['ready']!s:<5} running={step['running']}")


if __name__ == "__main__":
    main()
