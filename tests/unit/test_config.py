"""parse_app_config: the `args:` block of a Serve config file becomes a typed AppConfig."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from serve_app.config import AppConfig, ConfigError, parse_app_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def app_args(config_file: str) -> dict:
    document = yaml.safe_load((CONFIGS / config_file).read_text())
    (app,) = [a for a in document["applications"] if a["name"] == "default"]
    return copy.deepcopy(app["args"])


MINIMAL = {"llm": {"served_name": "tiny", "model": "tiny", "version": "v1"}}


def minimal(**llm_fields) -> dict:
    args = copy.deepcopy(MINIMAL)
    args["llm"].update(llm_fields)
    return args


def test_local_yaml_args_parse():
    config = parse_app_config(app_args("local.yaml"))
    assert isinstance(config, AppConfig)
    assert config.llm.served_name == "tiny-qwen2"
    assert config.llm.engine == "auto"
    assert config.llm.max_model_len == 1024


def test_prod_yaml_args_parse():
    config = parse_app_config(app_args("prod.yaml"))
    assert config.llm.served_name == "qwen2.5-7b-instruct"
    assert config.llm.dtype == "bfloat16"
    # Derived in the replica from the plan's 32 GB budget over the real card's memory.
    assert config.llm.gpu_memory_utilization is None
    assert config.gpu_plan.deployments["LLM"].budget_gb(config.gpu_plan.card_gb) / config.gpu_plan.card_gb == 0.40
    assert config.llm.max_num_seqs == 128
    assert config.ingress.max_request_bytes == 4194304


def test_prod_yaml_version_is_a_string_even_though_yaml_reads_it_unquoted():
    # `version: 2024-09` is not a YAML date (no day), so it stays a string.
    assert parse_app_config(app_args("prod.yaml")).llm.version == "2024-09"


def test_prod_yaml_absolute_paths_are_kept():
    config = parse_app_config(app_args("prod.yaml"))
    assert config.model_store == Path("/models")
    assert config.data_dir == Path("/data")


def test_relative_paths_become_absolute_against_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = parse_app_config({**MINIMAL, "model_store": "models", "data_dir": "state/data"})
    assert config.model_store.is_absolute()
    assert config.data_dir.is_absolute()
    assert config.model_store == tmp_path.resolve() / "models"
    assert config.data_dir == tmp_path.resolve() / "state" / "data"


def test_default_paths_are_absolute():
    config = parse_app_config(copy.deepcopy(MINIMAL))
    assert config.model_store.is_absolute()
    assert config.data_dir.is_absolute()


def test_defaults_for_optional_sections():
    config = parse_app_config(copy.deepcopy(MINIMAL))
    assert config.llm.engine == "auto"
    assert config.llm.max_model_len is None
    assert config.ingress.max_request_bytes == 1 << 20


def test_unknown_llm_key_is_rejected_naming_the_dotted_field():
    args = minimal(enginee="vllm")
    with pytest.raises(ConfigError, match=r"llm\.enginee"):
        parse_app_config(args)


def test_unknown_top_level_key_is_rejected_naming_it():
    with pytest.raises(ConfigError, match=r"modle_store"):
        parse_app_config({**copy.deepcopy(MINIMAL), "modle_store": "models"})


def test_unknown_ingress_key_is_rejected_naming_the_dotted_field():
    with pytest.raises(ConfigError, match=r"ingress\.max_bytes"):
        parse_app_config({**copy.deepcopy(MINIMAL), "ingress": {"max_bytes": 10}})


def test_bad_engine_enum_is_rejected_naming_the_field():
    with pytest.raises(ConfigError, match=r"llm\.engine"):
        parse_app_config(minimal(engine="tpu"))


@pytest.mark.parametrize("value", [0.0, -0.1, 1.5])
def test_out_of_range_gpu_memory_utilization_is_rejected_naming_the_field(value):
    with pytest.raises(ConfigError, match=r"llm\.gpu_memory_utilization"):
        parse_app_config(minimal(gpu_memory_utilization=value))


def test_missing_llm_section_is_rejected_naming_it():
    with pytest.raises(ConfigError, match=r"\bllms: Field required"):
        parse_app_config({"model_store": "models"})


def test_missing_required_llm_field_is_rejected_naming_it():
    args = copy.deepcopy(MINIMAL)
    del args["llm"]["version"]
    with pytest.raises(ConfigError, match=r"llm\.version"):
        parse_app_config(args)


def test_every_bad_field_is_named_in_one_error():
    with pytest.raises(ConfigError) as exc_info:
        parse_app_config(minimal(engine="tpu", gpu_memory_utilization=2.0, enginee="x"))
    message = str(exc_info.value)
    for field in ("llm.engine", "llm.gpu_memory_utilization", "llm.enginee"):
        assert field in message


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


def test_local_yaml_fits_the_ray_of_a_two_core_machine():
    # `make serve` starts Ray with the host's cores as its CPUs: every deployment the builder makes
    # must be listed with its logical CPUs (Serve's default is 1 each), and all must fit in 2.
    from serve_app.app import build_app

    (app,) = yaml.safe_load((CONFIGS / "local.yaml").read_text())["applications"]
    listed = {d["name"]: d["ray_actor_options"]["num_cpus"] for d in app["deployments"]}
    built = _deployment_names(build_app(app["args"]))
    assert built == set(listed), f"built {sorted(built)}, listed {sorted(listed)}"
    assert sum(listed.values()) <= 2


def _deployment_names(application) -> set[str]:
    """Every deployment in a bound application graph (the ingress and what its arguments bind)."""
    from ray.serve import Application

    names, todo = set(), [application]
    while todo:
        node = todo.pop()
        names.add(node._bound_deployment.name)
        args = [*node._bound_deployment.init_args, *node._bound_deployment.init_kwargs.values()]
        while args:
            value = args.pop()
            if isinstance(value, Application):
                todo.append(value)
            elif isinstance(value, dict | list | tuple):
                args.extend(value.values() if isinstance(value, dict) else value)
            elif hasattr(value, "__dataclass_fields__"):
                args.extend(getattr(value, f) for f in value.__dataclass_fields__)
    return names


def test_the_console_is_on_in_local_yaml_off_by_default_and_strict():
    assert parse_app_config(app_args("local.yaml")).ingress.console.enabled is True
    assert parse_app_config(app_args("prod.yaml")).ingress.console.enabled is False
    args = app_args("local.yaml")
    args["ingress"]["console"]["colour"] = "blue"
    with pytest.raises(ConfigError, match="colour"):
        parse_app_config(args)
