"""The LLM sections: which models the LLM deployments serve, their adapters, and how engines run them.

`llms:` is a list; each entry is its own Serve deployment (its own replicas, autoscaling and
GPU-plan entry), named `LLM-<served_name>` unless `deployment:` names it. One entry covers both
engines (vLLM on a GPU, transformers on CPU hosts) so a config moves between a laptop and a GPU
box unchanged; keys that only one engine reads say which. vLLM options the project does not
type pass through `engine_kwargs`, refused only where the project sets the same option itself.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from serve_app.config.common import _repeated, _Strict

# What the vLLM engine derives from typed fields (or the GPU plan): setting them again in
# engine_kwargs would leave two values for one knob, so the config names the field to use.
VLLM_OWNED_KWARGS = {
    "model": "model/version",
    "tokenizer": "model/version",
    "max_model_len": "max_model_len",
    "dtype": "dtype",
    "gpu_memory_utilization": "gpu_memory_utilization",
    "enable_prefix_caching": "enable_prefix_caching",
    "max_num_seqs": "max_num_seqs",
    "enable_lora": "adapters",
    "max_loras": "max_adapters_per_replica",
    "max_lora_rank": "max_lora_rank",
}


class AdapterConfig(_Strict):
    """A LoRA adapter of its LLM, kept in the model store like a model (versioned, manifest, sha256)."""

    name: str = Field(min_length=1, description="The id clients pass as `model`.")
    model: str = Field(description="Adapter name in the model store.")
    version: str = Field(description="Adapter version in the model store.")


class LLMConfig(_Strict):
    served_name: str = Field(min_length=1, description="The id clients pass as `model` and see in /v1/models.")
    deployment: str | None = Field(
        default=None, description="Serve deployment name; default: LLM-<served_name> (the YAML's options name it)."
    )
    model: str = Field(description="Model name in the model store.")
    version: str = Field(description="Model version in the model store.")
    engine: Literal["auto", "vllm", "transformers"] = Field(
        default="auto", description="auto: vLLM when the replica sees CUDA, else transformers."
    )
    max_model_len: int | None = Field(default=None, ge=16, description="Context window; default: the model's own.")
    dtype: Literal["auto", "float16", "bfloat16", "float32"] = "auto"
    gpu_memory_utilization: float | None = Field(
        default=None,
        gt=0.0,
        le=1.0,
        description="vLLM: fraction of the whole card preallocated, whatever Ray's num_gpus says. "
        "Default: the gpu_plan's memory budget over the real card's memory (0.9 without a plan).",
    )
    enable_prefix_caching: bool = True
    max_num_seqs: int = Field(default=64, ge=1, description="Sequences batched per step (both engines).")
    cpu_threads: int | None = Field(default=None, ge=1, description="transformers engine: torch intra-op threads.")
    max_n: int = Field(default=8, ge=1, le=128, description="The largest `n` (choices per prompt) a request may ask.")
    max_prompts: int = Field(default=32, ge=1, description="The longest list of prompts one /v1/completions may send.")
    stream_interval_ms: int = Field(
        default=50,
        ge=0,
        description="transformers engine: while several requests run, a stream sends what its request "
        "generated in this long as one chunk (a lone request streams every token); 0: every token. "
        "50 ms is Ray Serve LLM's own stream batching interval.",
    )
    adapters: list[AdapterConfig] = Field(
        default_factory=list, description="LoRA adapters served as `model: <name>`, loaded on first use."
    )
    max_adapters_per_replica: int = Field(
        default=4, ge=1, description="Adapters a replica keeps loaded (LRU); vLLM's max_loras."
    )
    max_lora_rank: int = Field(default=16, ge=1, description="Largest adapter rank the engine accepts.")
    engine_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="vLLM: further AsyncEngineArgs, passed through as given."
    )

    @property
    def deployment_name(self) -> str:
        return self.deployment or f"LLM-{re.sub(r'[^A-Za-z0-9_.-]', '-', self.served_name)}"

    @property
    def served_ids(self) -> list[str]:
        """Every id this deployment answers: the base model and its adapters."""
        return [self.served_name, *(a.name for a in self.adapters)]

    @field_validator("engine_kwargs")
    @classmethod
    def _no_second_value(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
        owned = {key: VLLM_OWNED_KWARGS[key] for key in kwargs if key in VLLM_OWNED_KWARGS}
        if owned:
            raise ValueError(
                "set by this project, not through engine_kwargs: "
                + ", ".join(f"{key} (use `{field}`)" for key, field in owned.items())
            )
        return kwargs

    @model_validator(mode="after")
    def _adapter_names_unique(self) -> LLMConfig:
        names = [a.name for a in self.adapters]
        dupes = sorted({*_repeated(names), *({self.served_name} & set(names))})
        if dupes:
            raise ValueError(f"adapters: names {dupes} are used twice (or equal the served_name)")
        return self
