"""Every deployment in both configs bounds its queue and tells rejected clients when to come back."""

from __future__ import annotations

import pytest
from ray.serve.schema import ServeDeploySchema

from tests import serve_harness

CONFIGS = ["local.yaml", "prod.yaml"]


def deployments(config: str):
    # Validated by Serve's own schema, as `serve run` does: a typo in these keys fails here.
    schema = ServeDeploySchema.model_validate(serve_harness.load_config(config))
    return schema.applications[0].deployments


@pytest.mark.parametrize("config", CONFIGS)
def test_every_deployment_has_a_bounded_queue_and_retry_after(config):
    for d in deployments(config):
        assert d.max_ongoing_requests > 0, d.name
        assert d.max_queued_requests > 0, f"{config}: {d.name} queues without limit (a client would hang)"
        assert d.backpressure_config.status_code in (503, 429), d.name
        assert d.backpressure_config.retry_after_s, f"{config}: {d.name} rejects without Retry-After"


def test_prod_autoscaling_targets_sit_below_what_a_replica_accepts():
    for d in deployments("prod.yaml"):
        scaling = d.autoscaling_config  # the YAML's dict, as written
        if scaling:
            # At max_ongoing_requests the rest queue at the callers: the target must be reachable first.
            assert scaling["target_ongoing_requests"] < d.max_ongoing_requests, d.name


def test_prod_ingress_can_carry_what_the_llm_can_serve_at_full_scale():
    by_name = {d.name: d for d in deployments("prod.yaml")}
    ingress, llm = by_name["Ingress"], by_name["LLM"]
    ingress_capacity = ingress.autoscaling_config["max_replicas"] * ingress.max_ongoing_requests
    llm_capacity = llm.autoscaling_config["max_replicas"] * llm.max_ongoing_requests
    assert ingress.autoscaling_config["min_replicas"] >= 2, "one replica is a single point of failure"
    assert ingress_capacity >= llm_capacity
