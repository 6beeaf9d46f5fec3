"""The LLM section: which model the LLM deployment serves, and how its engine runs it.

One section covers both engines (vLLM on a GPU, transformers on CPU hosts) so a config moves
between a laptop and a GPU box unchanged; keys that only one engine reads say which. The
vLLM memory pool is sized from the GPU plan unless set here (see config/gpu_plan.py).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from serve_app.config.common import _Strict


class LLMConfig(_Strict):
    served_name: str = Field(description="The id clients pass as `model` and see in /v1/models.")
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
