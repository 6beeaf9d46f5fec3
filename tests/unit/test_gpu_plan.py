"""The GPU plan: the budget invariant, the builder's refusal, the replica's re-check and the plan table."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import yaml

from deployments.gpu_budget import GPUPlanBroken, check_claim, vllm_memory_utilization
from serve_app.common.gpu_plan import GPUClaim, card_memory_gb, gpus_needed
from serve_app.config import ConfigError, parse_app_config
from serve_app.tools.plan_table import plan_file
from tests.unit.test_config import CONFIGS, app_args

VISION = {
    "detector": {"served_name": "d", "model": "d", "version": "1"},
    "clip": {"served_name": "c", "model": "c", "version": "1"},
}


def planned(deployments: dict, gpu: str = "H100-80GB", **llm) -> dict:
    return {
        "llm": {"served_name": "tiny", "model": "tiny", "version": "v1", **llm},
        "vision": copy.deepcopy(VISION),
        "gpu_plan": {"gpu": gpu, "cuda_context_gb": 1.0, "deployments": deployments},
    }


@pytest.mark.parametrize(
    ("card", "gb"), [("H100-80GB", 80), ("L4-24GB", 24), ("h200-141gb", 141), ("A100 40GB", 40), ("48GB", 48)]
)
def test_card_memory_comes_from_the_spec(card, gb):
    assert card_memory_gb(card) == gb


@pytest.mark.parametrize("card", ["H100", "80", "H100-0GB", "H100-80MB"])
def test_a_card_without_memory_is_refused(card):
    with pytest.raises(ValueError, match="<name>-<memory>GB"):
        card_memory_gb(card)


def test_a_plan_that_fits_parses_and_places_its_deployments():
    config = parse_app_config(
        planned({"LLM": {"num_gpus": 0.5, "memory_gb": 39}, "Detector": {"num_gpus": 0.1, "memory_fraction": 0.05}})
    )
    assert config.gpu_plan.deployments["LLM"].actor_options() == {"num_cpus": 1.0, "num_gpus": 0.5}
    assert config.gpu_plan.claim("Detector") == GPUClaim("Detector", 0.1, 4.0, 1.0, "H100-80GB")
    assert config.gpu_plan.claim("ClipEmbedder") is None


def test_the_builder_refuses_a_budget_over_its_fraction_naming_deployment_and_numbers():
    with pytest.raises(ConfigError) as refused:
        parse_app_config(
            planned({"LLM": {"num_gpus": 0.45, "memory_gb": 36}, "Detector": {"num_gpus": 0.05, "memory_gb": 2}})
        )
    message = str(refused.value)
    assert (
        "LLM: memory budget 36 GB + 1 GB CUDA context = 37 GB exceeds num_gpus 0.45 x 80 GB (H100-80GB) = 36 GB"
        in message
    )
    assert "Detector" not in message


def test_the_context_headroom_counts():
    fits = planned({"LLM": {"num_gpus": 0.5, "memory_gb": 40}})
    fits["gpu_plan"]["cuda_context_gb"] = 0
    parse_app_config(fits)
    with pytest.raises(ConfigError, match="LLM: memory budget 40 GB"):
        parse_app_config(planned({"LLM": {"num_gpus": 0.5, "memory_gb": 40}}))


def test_a_plan_naming_a_deployment_the_config_does_not_run_is_refused():
    with pytest.raises(ConfigError, match=r"names \['ASR'\], which this config does not run on a GPU"):
        parse_app_config(planned({"ASR": {"num_gpus": 0.2, "memory_gb": 4}}))


@pytest.mark.parametrize("budget", [{}, {"memory_gb": 4, "memory_fraction": 0.05}])
def test_a_budget_is_memory_gb_or_memory_fraction(budget):
    with pytest.raises(ConfigError, match="exactly one"):
        parse_app_config(planned({"LLM": {"num_gpus": 0.5, **budget}}))


def test_an_explicit_vllm_utilization_over_the_llm_budget_is_refused():
    with pytest.raises(ConfigError, match=r"gpu_memory_utilization 0.45 x 80 GB = 36 GB, over its memory budget 32 GB"):
        parse_app_config(planned({"LLM": {"num_gpus": 0.45, "memory_gb": 32}}, gpu_memory_utilization=0.45))
    parse_app_config(planned({"LLM": {"num_gpus": 0.45, "memory_gb": 32}}, gpu_memory_utilization=0.40))


def test_prod_yaml_plan_holds_and_covers_every_gpu_model():
    config = parse_app_config(app_args("prod.yaml"))
    assert set(config.gpu_plan.deployments) == set(config.gpu_capable_deployments())
    assert config.gpu_plan.violations() == []


@pytest.mark.parametrize(
    ("fractions", "cards"),
    [
        ([], 0),
        ([0.45, 0.15, 0.05, 0.05, 0.03], 1),
        ([0.45] * 3, 2),
        ([0.5, 0.5], 1),
        ([0.45, 0.45, 0.1], 1),
        ([0.6, 0.6], 2),
    ],
)
def test_gpus_needed_packs_first_fit_decreasing_without_float_drift(fractions, cards):
    assert gpus_needed(fractions) == cards


CLAIM = GPUClaim("Detector", 0.1, 6.0, 1.0, "H100-80GB")


def test_a_replica_granted_another_fraction_refuses_to_start():
    with pytest.raises(GPUPlanBroken, match="gives num_gpus 0.1 but Ray granted 0; a ray_actor_options entry"):
        check_claim(CLAIM, 0.0, None)


def test_a_replica_on_a_smaller_card_than_planned_refuses_naming_the_numbers():
    with pytest.raises(
        GPUPlanBroken, match=r"written for H100-80GB, but Detector: .* = 7 GB exceeds num_gpus 0.1 x 40 GB"
    ):
        check_claim(CLAIM, 0.1, 40.0)


def test_a_replica_on_its_card_gets_its_budget_as_a_share_of_the_real_memory():
    assert check_claim(CLAIM, 0.1, 79.6) == pytest.approx(6.0 / 79.6)
    assert check_claim(CLAIM, 0.1, None) is None  # Ray declared a GPU this machine does not have


def test_vllm_utilization_is_derived_from_the_budget_or_checked_against_it():
    assert vllm_memory_utilization(None, None) == 0.9
    assert vllm_memory_utilization(0.5, None) == 0.5
    assert vllm_memory_utilization(None, 0.4) == 0.4
    assert vllm_memory_utilization(0.3, 0.4) == 0.3
    with pytest.raises(GPUPlanBroken, match="gpu_memory_utilization 0.5 preallocates more"):
        vllm_memory_utilization(0.5, 0.4)


def test_plan_table_for_prod_yaml():
    table, holds = plan_file(CONFIGS / "prod.yaml")
    assert holds, table
    assert "at min scale: 0.90 GPU in fractions -> 1 x H100-80GB" in table
    assert "-> 4 x H100-80GB" in table.splitlines()[-2]
    llm = next(line for line in table.splitlines() if line.startswith("LLM "))
    assert llm.split() == ["LLM", "0.45", "36.0", "32.0", "33.0", "1", "4", "4"]


def test_plan_table_on_a_smaller_card_lists_every_broken_budget(tmp_path):
    table, holds = plan_file(CONFIGS / "prod.yaml", "L4-24GB")
    assert not holds
    broken = [line for line in table.splitlines() if line.startswith("BROKEN")]
    assert len(broken) == 7 and "num_gpus 0.45 x 24 GB (L4-24GB) = 10.8 GB" in broken[0]


def test_plan_table_flags_yaml_actor_options_that_would_replace_the_plan(tmp_path):
    document = yaml.safe_load((CONFIGS / "prod.yaml").read_text())
    llm = next(d for d in document["applications"][0]["deployments"] if d["name"] == "LLM")
    llm["ray_actor_options"] = {"num_cpus": 4}
    path = tmp_path / "prod.yaml"
    path.write_text(yaml.safe_dump(document))
    table, holds = plan_file(path)
    assert not holds and "LLM: ray_actor_options in the deployments list would replace the gpu_plan's" in table


def test_plan_command_exit_status():
    def run(*args):
        return subprocess.run([sys.executable, "-m", "serve_app", "plan", *args], capture_output=True, text=True)

    assert run(str(CONFIGS / "prod.yaml")).returncode == 0
    broken = run(str(CONFIGS / "prod.yaml"), "--gpu", "L4-24GB")
    assert broken.returncode == 1 and "BROKEN LLM" in broken.stdout
