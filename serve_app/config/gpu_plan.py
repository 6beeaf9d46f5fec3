"""The `gpu_plan:` section: GPU fractions Ray schedules by, and the memory each replica really takes.

This is the typed config. The arithmetic and the invariant it enforces live in
serve_app.common.gpu_plan (that module, not this one: always imported by its absolute name), which
the replicas also use to re-check their claim on the card they land on, without any config.
A plan that does not fit fails when the config is read, not when a replica runs out of memory.
"""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from serve_app.common.gpu_plan import GPUClaim, budget_violation, card_memory_gb
from serve_app.config.common import _Strict


class GPUBudget(_Strict):
    num_gpus: float = Field(
        gt=0.0, le=1.0, description="Ray's fraction of one card per replica: decides packing, limits nothing."
    )
    num_cpus: float = Field(default=1.0, ge=0.0, description="Logical CPUs per replica (decode, pre-processing).")
    memory_gb: float | None = Field(default=None, gt=0.0, description="Card memory one replica takes at its peak.")
    memory_fraction: float | None = Field(
        default=None, gt=0.0, le=1.0, description="The same budget as a fraction of the planned card."
    )

    @model_validator(mode="after")
    def _one_budget(self) -> GPUBudget:
        if (self.memory_gb is None) == (self.memory_fraction is None):
            raise ValueError("give the memory budget as memory_gb or memory_fraction (exactly one)")
        return self

    def budget_gb(self, card_gb: float) -> float:
        if self.memory_gb is not None:
            return self.memory_gb
        assert self.memory_fraction is not None  # _one_budget: exactly one is given
        return self.memory_fraction * card_gb

    def actor_options(self) -> dict[str, float]:
        return {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus}


class GPUPlanConfig(_Strict):
    gpu: str = Field(description="The card the plan is written for, <name>-<memory>GB: H100-80GB, L4-24GB...")
    cuda_context_gb: float = Field(
        default=1.0,
        ge=0.0,
        description="Per replica, outside its budget: CUDA context, cuBLAS workspace, allocator slack.",
    )
    deployments: dict[str, GPUBudget] = Field(
        description="GPU deployments by Serve deployment name. The builder applies num_gpus/num_cpus itself: "
        "do not also give these deployments ray_actor_options in the YAML `deployments:` list."
    )

    @field_validator("gpu")
    @classmethod
    def _card_has_memory(cls, gpu: str) -> str:
        card_memory_gb(gpu)
        return gpu

    @property
    def card_gb(self) -> float:
        return card_memory_gb(self.gpu)

    def violations(self, card: str | None = None) -> list[str]:
        """Every deployment whose budget breaks the invariant on `card` (default: the planned one)."""
        card = card or self.gpu
        card_gb = card_memory_gb(card)
        found = (
            budget_violation(name, b.num_gpus, b.budget_gb(self.card_gb), self.cuda_context_gb, card_gb, card)
            for name, b in self.deployments.items()
        )
        return [v for v in found if v]

    def claim(self, deployment: str) -> GPUClaim | None:
        budget = self.deployments.get(deployment)
        if budget is None:
            return None
        return GPUClaim(deployment, budget.num_gpus, budget.budget_gb(self.card_gb), self.cuda_context_gb, self.gpu)
