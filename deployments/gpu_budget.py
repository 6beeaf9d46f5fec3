"""A replica's side of the GPU plan: check the share Ray granted and the real card, then cap PyTorch.

The builder checked the plan against the card it was written for; here the replica
checks it where it actually landed, before loading anything:
- Ray granted the planned fraction (a `ray_actor_options` in the YAML `deployments:`
  list replaces the plan's options wholesale: that would silently unplan the card);
- on the real card, budget + CUDA context still fits num_gpus x its memory.
Then PyTorch's caching allocator is capped at the budget, so a replica that outgrows
it fails with its own out-of-memory error instead of starving its neighbours.
"""

from __future__ import annotations

import logging

from serve_app.common.gpu_plan import GPUClaim, budget_violation

logger = logging.getLogger("ray.serve")
_GIB = 1 << 30


class GPUPlanBroken(RuntimeError):
    """The replica's placement or card breaks the plan; the replica refuses to start."""


def check_claim(claim: GPUClaim, granted_gpus: float, card_gb: float | None) -> float | None:
    """Raise when the placement breaks the plan; return the budget as a fraction of the real card."""
    if abs(granted_gpus - claim.num_gpus) > 1e-4:
        raise GPUPlanBroken(
            f"{claim.deployment}: the gpu_plan gives num_gpus {claim.num_gpus:g} but Ray granted {granted_gpus:g}; "
            "a ray_actor_options entry for it in the YAML deployments list replaces the plan's: remove it"
        )
    if card_gb is None:
        return None
    card = f"this {card_gb:.1f}GB card"
    problem = budget_violation(claim.deployment, claim.num_gpus, claim.budget_gb, claim.context_gb, card_gb, card)
    if problem:
        raise GPUPlanBroken(f"the plan was written for {claim.card}, but {problem}")
    return claim.budget_gb / card_gb


def claim_gpu(claim: GPUClaim | None, *, cap_torch: bool = True) -> float | None:
    """Check this replica against its claim; cap PyTorch to it on CUDA. Returns the budget's share of the card.

    None without a claim or without CUDA (Ray may declare GPUs a machine does not have).
    """
    if claim is None:
        return None
    import ray
    import torch

    granted = ray.get_runtime_context().get_assigned_resources().get("GPU", 0.0)
    card_gb = torch.cuda.mem_get_info()[1] / _GIB if torch.cuda.is_available() else None
    share = check_claim(claim, granted, card_gb)
    if share is not None and cap_torch:
        torch.cuda.set_per_process_memory_fraction(share)
    logger.info(
        "%s: GPU plan %g of the card, budget %g GB%s",
        claim.deployment,
        claim.num_gpus,
        claim.budget_gb,
        f" = {share:.3f} of this {card_gb:.1f} GB card" if share is not None else " (no CUDA device here)",
    )
    return share


VLLM_DEFAULT_UTILIZATION = 0.9


def vllm_memory_utilization(configured: float | None, share: float | None) -> float:
    """vLLM's gpu_memory_utilization: the configured value, else the budget's share of the real card."""
    if share is None:
        return configured if configured is not None else VLLM_DEFAULT_UTILIZATION
    if configured is None:
        return share
    if configured > share + 1e-9:
        raise GPUPlanBroken(
            f"LLM: gpu_memory_utilization {configured:g} preallocates more of this card than its budget "
            f"({share:.3f} of it); leave gpu_memory_utilization unset to derive it from the budget"
        )
    return configured
