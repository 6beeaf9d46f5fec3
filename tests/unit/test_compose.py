"""deploy/compose.yaml: the app on one GPU host beside a Qdrant server, checked against prod.yaml and the image."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

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


def test_two_services_the_app_waits_for_a_healthy_qdrant():
    services = COMPOSE["services"]
    assert set(services) == {"app", "qdrant"}
    assert services["app"]["depends_on"] == {"qdrant": {"condition": "service_healthy"}}


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
