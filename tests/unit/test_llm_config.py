"""`llms:`: a list of LLMs, each its own deployment, with adapters; the older `llm:` still reads."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from serve_app.app import build_app
from serve_app.config import ConfigError, parse_app_config
from serve_app.http.traffic import TrafficTable

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
BASE = {"served_name": "small", "model": "tiny", "version": "v1"}


def llm(**fields) -> dict:
    return {**BASE, **fields}


def two_llms(**second) -> dict:
    return {"llms": [llm(), llm(served_name="large", version="v2", **second)]}


def test_each_llm_is_its_own_deployment_named_by_its_served_name_unless_given():
    config = parse_app_config({"llms": [llm(deployment="LLM"), llm(served_name="large/v2", version="v2")]})
    assert [e.deployment_name for e in config.llms] == ["LLM", "LLM-large-v2"]
    assert config.gpu_capable_deployments() == ["LLM", "LLM-large-v2"]


def test_the_singular_llm_section_reads_as_a_list_of_one_named_llm():
    config = parse_app_config({"llm": llm()})
    assert [(e.served_name, e.deployment_name) for e in config.llms] == [("small", "LLM")]


def test_llm_and_llms_together_are_refused():
    with pytest.raises(ConfigError, match="not both"):
        parse_app_config({"llm": llm(), "llms": [llm()]})


def test_a_model_id_served_twice_is_refused_naming_it():
    adapters = [{"name": "small", "model": "a", "version": "v1"}]
    with pytest.raises(ConfigError, match=r"llms: model ids \['small'\] are served twice"):
        parse_app_config(two_llms(adapters=adapters))


def test_two_adapters_with_one_name_are_refused():
    adapters = [{"name": "x", "model": "a", "version": "v1"}, {"name": "x", "model": "b", "version": "v1"}]
    with pytest.raises(ConfigError, match=r"llms\.0: .*adapters: names \['x'\]"):
        parse_app_config({"llms": [llm(adapters=adapters)]})


def test_one_deployment_name_twice_is_refused():
    with pytest.raises(ConfigError, match="deployment names"):
        parse_app_config({"llms": [llm(deployment="LLM"), llm(served_name="b", deployment="LLM")]})


def test_engine_kwargs_pass_through_but_not_the_options_the_project_sets():
    config = parse_app_config({"llms": [llm(engine_kwargs={"swap_space": 4, "kv_cache_dtype": "fp8"})]})
    assert config.llm.engine_kwargs == {"swap_space": 4, "kv_cache_dtype": "fp8"}
    with pytest.raises(ConfigError, match=r"llms\.0\.engine_kwargs: .*max_model_len \(use `max_model_len`\)"):
        parse_app_config({"llms": [llm(engine_kwargs={"max_model_len": 8})]})


def test_vllm_engine_args_carry_lora_settings_and_engine_kwargs():
    from deployments.llm.engines.vllm_engine import to_engine_args

    adapters = [{"name": "x", "model": "a", "version": "v1"}]
    entry = parse_app_config({"llms": [llm(adapters=adapters, max_lora_rank=32, engine_kwargs={"seed": 7})]}).llm
    args = to_engine_args(Path("/m"), entry)
    assert (args.enable_lora, args.max_loras, args.max_lora_rank, args.seed) == (True, 4, 32, 7)
    assert not to_engine_args(Path("/m"), parse_app_config({"llm": llm()}).llm).enable_lora


def test_a_pipeline_is_bound_to_the_llm_it_names_or_for_an_alias_to_the_first():
    # An alias lives in the Ingress's traffic table, which the Ingress checks (tests/http/test_llm_traffic.py).
    args = {**two_llms(), "speech": {"served_name": "w", "model": "w", "version": "v1"}}
    args["video_summary"] = {"llm_model": "large"}
    config = parse_app_config(args)
    assert config.pipeline_llms == {"video_summary.llm_model": "large"}
    assert config.pipeline_llm("video_summary.llm_model") == "large"
    args["video_summary"] = {"llm_model": "assistant"}
    assert parse_app_config(args).pipeline_llm("video_summary.llm_model") == config.llm.served_name
    del args["video_summary"]
    assert parse_app_config(args).pipeline_llms == {}


def test_the_gpu_plan_checks_every_llms_vllm_pool():
    plan = {"gpu": "H100-80GB", "deployments": {"LLM-large": {"num_gpus": 0.3, "memory_gb": 20}}}
    with pytest.raises(ConfigError, match="LLM-large: vLLM preallocates gpu_memory_utilization 0.5"):
        parse_app_config({**two_llms(gpu_memory_utilization=0.5), "gpu_plan": plan})


def test_the_builder_binds_one_deployment_per_llm_and_routes_adapters_to_their_base():
    adapters = [{"name": "small-lora", "model": "a", "version": "v1"}]
    app = build_app({"llms": [llm(adapters=adapters), llm(served_name="large", version="v2")]})
    models, _services, _config, _gateway, _pipelines, _batch = app._bound_deployment.init_args
    llms = models.handles["llm"]
    assert {name: h._bound_deployment.name for name, h in llms.items()} == {
        "small": "LLM-small",
        "small-lora": "LLM-small",
        "large": "LLM-large",
    }
    assert models.adapters == {"small-lora": "small"}


@pytest.mark.parametrize("config_file", ["local.yaml", "prod.yaml"])
def test_the_shipped_traffic_tables_name_only_served_models(config_file):
    app = yaml.safe_load((CONFIGS / config_file).read_text())["applications"][0]
    config = parse_app_config(app["args"])
    (ingress,) = [d for d in app["deployments"] if d["name"] == "Ingress"]
    served = {i for entry in config.llms for i in entry.served_ids}
    table = TrafficTable.from_user_config(ingress.get("user_config"), served)
    assert table.aliases, f"{config_file} ships an alias with a split"
    assert all(name in served or name in table for name in config.pipeline_llms.values())
