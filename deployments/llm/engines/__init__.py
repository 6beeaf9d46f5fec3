"""LLM engines behind one protocol (`base.Engine`), chosen per replica."""

from __future__ import annotations

from pathlib import Path

from deployments.llm.engines.base import Engine
from serve_app.config import LLMConfig


def resolve_engine_name(preference: str) -> str:
    """`auto` means vLLM when this replica sees a CUDA device, else transformers."""
    import torch

    has_cuda = torch.cuda.is_available()
    if preference == "auto":
        return "vllm" if has_cuda else "transformers"
    if preference == "vllm" and not has_cuda:
        raise RuntimeError(
            "llm.engine is 'vllm' but this replica sees no CUDA device; give the deployment "
            "num_gpus in ray_actor_options, or use engine: auto / transformers"
        )
    return preference


def create_engine(config: LLMConfig, model_dir: Path) -> Engine:
    name = resolve_engine_name(config.engine)
    if name == "vllm":
        from deployments.llm.engines.vllm_engine import VLLMEngine

        return VLLMEngine.create(model_dir, config)
    from deployments.llm.engines.transformers_engine import TransformersEngine

    return TransformersEngine.create(model_dir, config)
