"""configs/gateway.yaml is configs/local.yaml with the gateway on; the gateway section's rules."""

from __future__ import annotations

import copy

import pytest
import yaml

from serve_app.config import ConfigError, parse_app_config
from tests.unit.test_config import CONFIGS, MINIMAL, _deployment_names, app_args


def _app(name: str) -> dict:
    (app,) = yaml.safe_load((CONFIGS / name).read_text())["applications"]
    return app


def test_gateway_yaml_is_local_yaml_plus_the_gateway():
    local, gateway = _app("local.yaml"), _app("gateway.yaml")
    args = copy.deepcopy(gateway["args"])
    section = args.pop("gateway")
    assert args == local["args"], "the same models as local.yaml"
    assert section["state"] == "embedded" and section["master_key_env"] == "SERVE_MASTER_KEY"
    extra = [d for d in gateway["deployments"] if d not in local["deployments"]]
    assert [d["name"] for d in extra] == ["GatewayState"]
    assert extra[0]["num_replicas"] == 1, "one process owns the SQLite file"


def test_gateway_yaml_parses_and_fits_two_cores():
    from serve_app.app import build_app

    app = _app("gateway.yaml")
    config = parse_app_config(app_args("gateway.yaml"))
    assert config.gateway.cache.routes == ["embeddings"]
    assert config.ingress.api_key_env is None
    listed = {d["name"]: d["ray_actor_options"]["num_cpus"] for d in app["deployments"]}
    assert _deployment_names(build_app(app["args"])) == set(listed)
    assert sum(listed.values()) <= 2


def test_local_yaml_stays_open():
    config = parse_app_config(app_args("local.yaml"))
    assert config.gateway is None and config.ingress.api_key_env is None


def test_the_static_key_and_the_gateway_do_not_mix():
    args = {**copy.deepcopy(MINIMAL), "ingress": {"api_key_env": "K"}, "gateway": {}}
    with pytest.raises(ConfigError, match="api_key_env and gateway"):
        parse_app_config(args)


def test_gateway_fields_are_strict_and_named():
    with pytest.raises(ConfigError, match="gateway.statee"):
        parse_app_config({**copy.deepcopy(MINIMAL), "gateway": {"statee": "embedded"}})
    with pytest.raises(ConfigError, match="gateway.cache.routes"):
        parse_app_config({**copy.deepcopy(MINIMAL), "gateway": {"cache": {"routes": ["audio"]}}})


def test_server_mode_binds_no_state_deployment():
    from serve_app.app import build_app

    args = {**copy.deepcopy(MINIMAL), "gateway": {"state": "server"}}
    assert "GatewayState" not in _deployment_names(build_app(args))
