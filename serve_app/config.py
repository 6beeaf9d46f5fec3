"""Typed application config: the `args:` block of a Serve config file.

Deployment *options* (replicas, resources, autoscaling, max_ongoing_requests)
are not here: they stay in the YAML's `deployments:` list, which Serve applies
by deployment name, so operators tune them without touching Python.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class _Strict(BaseModel):
    # A typo in a config key must fail loudly, not silently fall back to a default.
    model_config = ConfigDict(extra="forbid")


class LLMConfig(_Strict):
    served_name: str = Field(description="The id clients pass as `model` and see in /v1/models.")
    model: str = Field(description="Model name in the model store.")
    version: str = Field(description="Model version in the model store.")
    engine: Literal["auto", "vllm", "transformers"] = Field(
        default="auto", description="auto: vLLM when the replica sees CUDA, else transformers."
    )
    max_model_len: int | None = Field(default=None, ge=16, description="Context window; default: the model's own.")
    dtype: Literal["auto", "float16", "bfloat16", "float32"] = "auto"
    gpu_memory_utilization: float = Field(
        default=0.9,
        gt=0.0,
        le=1.0,
        description="vLLM: fraction of the whole card preallocated, whatever Ray's num_gpus says.",
    )
    enable_prefix_caching: bool = True
    max_num_seqs: int = Field(default=64, ge=1, description="vLLM: sequences batched per step.")
    cpu_threads: int | None = Field(default=None, ge=1, description="transformers engine: torch intra-op threads.")


class IngressConfig(_Strict):
    max_request_bytes: int = Field(default=1 << 20, ge=1024, description="Larger JSON bodies get 413.")
    max_upload_bytes: int = Field(
        default=25 << 20, ge=1024, description="Larger multipart uploads (audio, video, images) get 413."
    )
    probe_timeout_s: float = Field(
        default=5.0, gt=0.0, description="How long /ready and /v1/models wait on each deployment."
    )
    api_key_env: str | None = Field(
        default=None,
        description="Environment variable holding the key clients send as `Authorization: Bearer <key>`. "
        "Unset: no authentication. The key itself never goes in the YAML.",
    )


class AppConfig(_Strict):
    model_store: Path = Field(default=Path("models"), description="Root of models/<name>/<version>/.")
    data_dir: Path = Field(default=Path("data"), description="Caches and runtime state.")
    llm: LLMConfig
    ingress: IngressConfig = IngressConfig()

    @model_validator(mode="after")
    def _absolute_paths(self) -> AppConfig:
        # Replicas run in other processes; resolve relative paths once, where the
        # config is read, so every replica sees the same directories.
        self.model_store = self.model_store.expanduser().resolve()
        self.data_dir = self.data_dir.expanduser().resolve()
        return self


class ConfigError(ValueError):
    """A config that fails validation, with every bad field named."""


def parse_app_config(args: dict) -> AppConfig:
    try:
        return AppConfig.model_validate(args)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid application config: {problems}") from None
