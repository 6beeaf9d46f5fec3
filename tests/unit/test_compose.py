"""deploy/compose.yaml: the app on one GPU host beside a Qdrant server, Prometheus and Grafana, checked against
prod.yaml, the image and the files under deploy/prometheus and deploy/grafana it mounts."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from serve_app.tools.kuberay import METRICS_PORT

REPO = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((REPO / "deploy" / "compose.yaml").read_text())
PROD = yaml.safe_load((REPO / "configs" / "prod.yaml").read_text())
ARGS = PROD["applications"][0]["args"]


def _volume_targets(service: dict) -> dict[str, str]:
    """container path -> 'source[:mode]' for short-syntax volumes."""
    found = {}
    for spec in service["volumes"]:
        # Split from the right: the source may be `${VAR:-default}`, which holds a colon itself.
        rest, _, mode = spec.rpartition(":")
        if mode not in ("ro", "rw"):
            rest, mode = spec, ""
        source, _, target = rest.rpartition(":")
        found[target] = f"{source}:{mode}" if mode else source
    return found


def test_the_app_waits_for_a_healthy_qdrant_and_monitoring_does_not_wait_for_the_app():
    services = COMPOSE["services"]
    assert set(services) == {"app", "qdrant", "prometheus", "grafana"}
    assert services["app"]["depends_on"] == {"qdrant": {"condition": "service_healthy"}}
    # Prometheus must keep running (and alerting) while the app is down or starting.
    assert "depends_on" not in services["prometheus"]
    assert services["grafana"]["depends_on"] == {"prometheus": {"condition": "service_healthy"}}


def test_qdrant_image_is_pinned_to_the_client_line():
    image = COMPOSE["services"]["qdrant"]["image"]
    match = re.fullmatch(r"qdrant/qdrant:v(\d+)\.(\d+)\.(\d+)", image)
    assert match, f"unpinned qdrant image: {image}"
    (client,) = re.findall(r"^qdrant-client==(\d+)\.(\d+)\.", (REPO / "requirements.lock").read_text(), re.M)
    assert match.groups()[:2] == client, "server and qdrant-client should share a minor version"


def test_health_checks_probe_the_app_health_route_and_qdrant_readiness():
    services = COMPOSE["services"]
    app_test = services["app"]["healthcheck"]["test"]
    assert app_test[0] == "CMD" and app_test[-1] == f"http://127.0.0.1:{PROD['http_options']['port']}/health"
    qdrant_test = " ".join(services["qdrant"]["healthcheck"]["test"])
    assert "/dev/tcp/127.0.0.1/6333" in qdrant_test and "GET /readyz" in qdrant_test and " 200 " in qdrant_test
    # Compose interpolates `$`: a shell variable in a healthcheck must be written `$$`.
    assert "$status" not in qdrant_test.replace("$$status", "")


def test_the_qdrant_url_comes_from_the_environment_prod_yaml_reads():
    qdrant = ARGS["vision"]["qdrant"]
    env = COMPOSE["services"]["app"]["environment"]
    assert env[qdrant["url_env"]] == "${QDRANT_URL:-http://qdrant:6333}"
    # The API key the ingress requires is demanded from whoever runs compose, never written here.
    assert env[ARGS["ingress"]["api_key_env"]].startswith("${SERVE_API_KEY:?")


def test_model_store_read_only_and_data_writable_at_the_prod_paths():
    volumes = _volume_targets(COMPOSE["services"]["app"])
    assert volumes[ARGS["model_store"]].endswith(":ro")
    data = volumes[ARGS["data_dir"]]
    assert not data.endswith(":ro") and data in COMPOSE["volumes"]
    assert _volume_targets(COMPOSE["services"]["qdrant"])["/qdrant/storage"] in COMPOSE["volumes"]


def test_the_app_reserves_nvidia_gpus_and_serves_prods_port():
    app = COMPOSE["services"]["app"]
    (device,) = app["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert app["ports"] == ["${PORT:-8000}:" + str(PROD["http_options"]["port"])]
    assert app["build"]["context"] == ".."


def test_stop_grace_outlasts_every_graceful_shutdown():
    grace = int(COMPOSE["services"]["app"]["stop_grace_period"].removesuffix("s"))
    longest = max(d.get("graceful_shutdown_timeout_s", 20) for d in PROD["applications"][0]["deployments"])
    assert grace > longest


# -- Prometheus and Grafana ------------------------------------------------------------------------------------


def _mounted(service: str, target: str) -> Path:
    """The repository path compose mounts at `target` (read-only) in `service`."""
    source = _volume_targets(COMPOSE["services"][service])[target]
    assert source.endswith(":ro"), f"{service} should mount {target} read-only"
    path = (REPO / "deploy" / source.removesuffix(":ro")).resolve()
    assert path.exists(), f"{service} mounts {path}, which does not exist"
    return path


def test_the_app_exposes_its_metrics_port_to_prometheus_only():
    app = COMPOSE["services"]["app"]
    assert app["expose"] == [str(METRICS_PORT)]
    assert not any(str(METRICS_PORT) in str(p) for p in app["ports"])  # on the compose network, not the host
    config = yaml.safe_load((REPO / "deploy" / "prometheus" / "prometheus.yml").read_text())
    targets = [t for job in config["scrape_configs"] for sc in job.get("static_configs", []) for t in sc["targets"]]
    assert targets == [f"app:{METRICS_PORT}"]


def test_prometheus_runs_the_shipped_config_and_rules():
    prometheus = COMPOSE["services"]["prometheus"]
    assert _mounted("prometheus", "/etc/prometheus") == REPO / "deploy" / "prometheus"
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    assert "prometheus-data" in COMPOSE["volumes"]
    assert _volume_targets(prometheus)["/prometheus"] == "prometheus-data"


def test_grafana_provisions_the_datasource_and_both_dashboard_folders_from_the_repo():
    provisioning = _mounted("grafana", "/etc/grafana/provisioning")
    assert provisioning == REPO / "deploy" / "grafana" / "provisioning"
    (datasource,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert datasource["type"] == "prometheus" and datasource["isDefault"] is True
    assert datasource["url"] == "http://prometheus:9090"  # the compose service
    providers = yaml.safe_load((provisioning / "dashboards" / "dashboards.yml").read_text())["providers"]
    mounts = _volume_targets(COMPOSE["services"]["grafana"])
    for provider in providers:
        folder = provider["options"]["path"]
        # Each provider's folder is mounted from the repo: a directory, or the one dashboard file inside it.
        inside = [target for target in mounts if target == folder or target.startswith(folder + "/")]
        assert inside, f"nothing mounted at {folder}"
        for target in inside:
            source = _mounted("grafana", target)
            assert source.suffix == ".json" if source.is_file() else any(source.glob("*.json")), target
    assert _mounted("grafana", "/etc/grafana/dashboards/ray") == REPO / "deploy" / "grafana" / "ray"
    home = COMPOSE["services"]["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert _mounted("grafana", home) == REPO / "deploy" / "grafana" / "multimodel-serve.json"


def test_monitoring_images_are_pinned_and_published_on_loopback_only():
    for name in ("prometheus", "grafana"):
        service = COMPOSE["services"][name]
        assert re.fullmatch(r"[a-z/]+:v?\d+\.\d+\.\d+", service["image"]), service["image"]
        assert all(port.startswith("127.0.0.1:") for port in service["ports"]), name
        assert service["healthcheck"]["test"][0] == "CMD"
