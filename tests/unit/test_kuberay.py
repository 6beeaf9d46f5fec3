"""deploy/kuberay/rayservice.yaml and podmonitors.yaml: generated from configs/prod.yaml, and kept in step with it."""

from __future__ import annotations

import argparse
import copy
import shlex
from pathlib import Path

import pytest
import yaml

from serve_app.__main__ import main
from serve_app.tools import kuberay

REPO = Path(__file__).resolve().parents[2]
MANIFEST = REPO / "deploy" / "kuberay" / "rayservice.yaml"
PODMONITORS = REPO / "deploy" / "kuberay" / "podmonitors.yaml"
PROD = REPO / "configs" / "prod.yaml"


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    kuberay.add_arguments(parser)
    return parser.parse_args(argv)


def _recorded_command(text: str) -> list[str]:
    (line,) = [line for line in text.splitlines() if line.startswith(kuberay.GENERATED_BY)]
    words = shlex.split(line.removeprefix(kuberay.GENERATED_BY))
    assert words[:4] == ["python", "-m", "serve_app", "kuberay"], line
    return words[4:]


def _manifest(config: Path, *extra: str) -> dict:
    return yaml.safe_load(kuberay.render(_parse([str(config), "--image", "img:1", *extra])))


def _pods(manifest: dict) -> tuple[dict, dict]:
    cluster = manifest["spec"]["rayClusterConfig"]
    (worker,) = cluster["workerGroupSpecs"]
    return cluster["headGroupSpec"], worker


def test_committed_manifest_matches_prod_yaml(monkeypatch):
    committed = MANIFEST.read_text()
    argv = _recorded_command(committed)
    monkeypatch.chdir(REPO)  # the recorded command uses paths relative to the repository root
    args = _parse(argv)
    assert Path(args.config).resolve() == PROD
    assert committed == kuberay.render(args), (
        f"{MANIFEST.relative_to(REPO)} is out of date with {args.config}; regenerate it with:\n"
        f"  {kuberay.command_line(args)}"
    )


def test_committed_podmonitors_come_from_the_same_command(monkeypatch):
    argv = _recorded_command(MANIFEST.read_text())
    monkeypatch.chdir(REPO)
    args = _parse(argv)
    assert args.podmonitors is not None and args.podmonitors.resolve() == PODMONITORS
    committed = PODMONITORS.read_text()
    assert _recorded_command(committed) == argv
    assert committed == kuberay.render_podmonitors(args), (
        f"{PODMONITORS.relative_to(REPO)} is out of date; regenerate it with:\n  {kuberay.command_line(args)}"
    )


def test_serve_config_v2_is_prod_yaml_unchanged():
    prod = yaml.safe_load(PROD.read_text())
    serve = yaml.safe_load(yaml.safe_load(MANIFEST.read_text())["spec"]["serveConfigV2"])
    assert serve == {key: prod[key] for key in ("proxy_location", "http_options", "applications")}


def test_applications_are_copied_whatever_keys_they_hold(tmp_path):
    # The generator must not know the app's keys: a new args section or deployment option goes through as is.
    document = yaml.safe_load(PROD.read_text())
    app = document["applications"][0]
    app["args"]["gpu_plan"] = {"card": "H100-80GB", "LLM": {"num_gpus": 0.45, "memory_gb": 36}}
    app["deployments"].append({"name": "Future", "max_queued_requests": 32})
    app["runtime_env"] = {"env_vars": {"X": "1"}}
    config = tmp_path / "prod.yaml"
    config.write_text(yaml.safe_dump(document))
    serve = yaml.safe_load(_manifest(config)["spec"]["serveConfigV2"])
    assert serve["applications"] == document["applications"]


def test_head_has_no_gpu_and_the_worker_group_one_gpu_each_autoscaled():
    manifest = _manifest(PROD, "--min-gpu-workers", "2", "--max-gpu-workers", "6")
    head, worker = _pods(manifest)
    assert manifest["apiVersion"] == "ray.io/v1" and manifest["kind"] == "RayService"
    assert manifest["spec"]["rayClusterConfig"]["enableInTreeAutoscaling"] is True
    assert head["rayStartParams"]["num-gpus"] == "0"
    (head_container,) = head["template"]["spec"]["containers"]
    assert "nvidia.com/gpu" not in head_container["resources"]["limits"]
    (worker_container,) = worker["template"]["spec"]["containers"]
    assert worker_container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert (worker["minReplicas"], worker["replicas"], worker["maxReplicas"]) == (2, 2, 6)
    # KubeRay's Serve health probe and the serve Service look for the port named `serve`.
    for container in (head_container, worker_container):
        assert {"name": "serve", "containerPort": 8000} in container["ports"]
        assert container["image"] == "img:1"


def test_model_store_is_a_read_only_claim_and_keys_come_from_the_secret():
    manifest = _manifest(PROD, "--model-pvc", "weights", "--secret", "keys", "--qdrant-url", "http://qdrant.db:6333")
    for group in _pods(manifest):
        spec = group["template"]["spec"]
        (container,) = spec["containers"]
        mounts = {m["name"]: m for m in container["volumeMounts"]}
        assert mounts["model-store"] == {"name": "model-store", "mountPath": "/models", "readOnly": True}
        assert mounts["data"]["mountPath"] == "/data"
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["model-store"]["persistentVolumeClaim"] == {"claimName": "weights", "readOnly": True}
        env = {e["name"]: e for e in container["env"]}
        assert env["QDRANT_URL"]["value"] == "http://qdrant.db:6333"
        assert env["SERVE_API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "keys"
        assert env["SERVE_API_KEY"]["valueFrom"]["secretKeyRef"]["key"] == "serve-api-key"
        assert env["QDRANT_API_KEY"]["valueFrom"]["secretKeyRef"]["key"] == "qdrant-api-key"
        assert spec["securityContext"]["runAsNonRoot"] is True


def test_a_relative_model_store_is_refused(tmp_path):
    document = yaml.safe_load(PROD.read_text())
    document["applications"][0]["args"]["model_store"] = "models"
    config = tmp_path / "prod.yaml"
    config.write_text(yaml.safe_dump(document))
    with pytest.raises(ValueError, match="model_store"):
        _manifest(config)


def test_a_config_without_applications_is_refused(tmp_path):
    config = tmp_path / "empty.yaml"
    config.write_text(yaml.safe_dump({"http_options": {"port": 8000}}))
    with pytest.raises(ValueError, match="no applications"):
        _manifest(config)


def test_cli_writes_the_file_and_records_how(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    out = tmp_path / "rs.yaml"
    assert main(["kuberay", "configs/prod.yaml", "--image", "reg.example/ms:2", "-o", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    text = out.read_text()
    assert _recorded_command(text)[:3] == ["configs/prod.yaml", "--image", "reg.example/ms:2"]
    assert (
        yaml.safe_load(text)["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0]["image"]
        == "reg.example/ms:2"
    )


def test_bad_worker_bounds_are_an_error_not_a_manifest(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(REPO)
    out = tmp_path / "rs.yaml"
    argv = ["kuberay", "configs/prod.yaml", "--image", "x", "--min-gpu-workers", "3", "--max-gpu-workers", "2"]
    assert main([*argv, "-o", str(out)]) == 1
    assert "--min-gpu-workers" in capsys.readouterr().err
    assert not out.exists()


def test_drift_is_caught(tmp_path, monkeypatch):
    # The same comparison as test_committed_manifest_matches_prod_yaml, on a config that changed afterwards.
    document = yaml.safe_load(PROD.read_text())
    config = tmp_path / "prod.yaml"
    config.write_text(yaml.safe_dump(document))
    args = _parse([str(config), "--image", "img:1"])
    before = kuberay.render(args)
    changed = copy.deepcopy(document)
    changed["applications"][0]["deployments"][0]["max_ongoing_requests"] = 1
    config.write_text(yaml.safe_dump(changed))
    assert kuberay.render(args) != before


def test_every_ray_pod_exports_metrics_on_the_one_fixed_port():
    for group in _pods(_manifest(PROD)):
        assert group["rayStartParams"]["metrics-export-port"] == str(kuberay.METRICS_PORT)
        (container,) = group["template"]["spec"]["containers"]
        # KubeRay (and the PodMonitors) find the exporter by the port name `metrics`.
        assert {"name": "metrics", "containerPort": kuberay.METRICS_PORT} in container["ports"]
    head, _worker = _pods(_manifest(PROD))
    assert head["rayStartParams"]["num-gpus"] == "0"  # the metrics parameter is added, nothing replaced


def test_podmonitors_select_this_rayservices_head_and_workers(tmp_path):
    args = _parse([str(PROD), "--image", "img:1", "--name", "llm-prod", "--prometheus-release", "kps"])
    head, worker = _pods(yaml.safe_load(kuberay.render(args)))
    monitors = list(yaml.safe_load_all(kuberay.render_podmonitors(args)))
    assert [m["kind"] for m in monitors] == ["PodMonitor", "PodMonitor"]
    assert all(m["apiVersion"] == "monitoring.coreos.com/v1" for m in monitors)
    for monitor, group, node_type in zip(monitors, (head, worker), ("head", "worker"), strict=True):
        assert monitor["metadata"]["labels"] == {"release": "kps"}
        selector = monitor["spec"]["selector"]["matchLabels"]
        # KubeRay labels each pod with its node type; the instance label comes from the pod template.
        assert selector == {**group["template"]["metadata"]["labels"], "ray.io/node-type": node_type}
        assert selector["app.kubernetes.io/instance"] == "llm-prod"
        (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
        assert endpoint["port"] == "metrics"
        assert {"targetLabel": "job", "replacement": kuberay.SCRAPE_JOB} in endpoint["relabelings"]
        assert any(r.get("targetLabel") == "ray_io_cluster" for r in endpoint["relabelings"])


def test_podmonitors_are_optional(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    out = tmp_path / "rs.yaml"
    assert main(["kuberay", "configs/prod.yaml", "--image", "x", "-o", str(out)]) == 0
    assert "--podmonitors" not in out.read_text().splitlines()[0]
    assert list(tmp_path.iterdir()) == [out]
    monitors = tmp_path / "pm.yaml"
    assert main(["kuberay", "configs/prod.yaml", "--image", "x", "-o", str(out), "--podmonitors", str(monitors)]) == 0
    assert f"wrote {monitors}" in capsys.readouterr().out
    assert _recorded_command(monitors.read_text()) == _recorded_command(out.read_text())
