"""The whole `args:` block: AppConfig, the checks that span sections, and parse_app_config.

Checks that need more than one section (a pipeline needs the models it composes, the GPU
plan names only deployments this config runs and fits the LLM's vLLM pool) live here, on
the one model that sees every section. parse_app_config flattens pydantic's errors into one
message naming every bad field by its YAML path, which is what an operator reads when
`serve run` refuses a config.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, ValidationError, model_validator

from serve_app.config.common import _Strict
from serve_app.config.gateway import GatewayConfig
from serve_app.config.gpu_plan import GPUPlanConfig
from serve_app.config.ingress import IngressConfig
from serve_app.config.llm import LLMConfig
from serve_app.config.pipelines import VideoSummaryConfig
from serve_app.config.speech import SpeechConfig
from serve_app.config.vision import VisionConfig


class AppConfig(_Strict):
    model_store: Path = Field(default=Path("models"), description="Root of models/<name>/<version>/.")
    data_dir: Path = Field(default=Path("data"), description="Caches and runtime state.")
    llm: LLMConfig
    ingress: IngressConfig = IngressConfig()
    speech: SpeechConfig | None = Field(default=None, description="WhisperX ASR; unset: not deployed.")
    video_summary: VideoSummaryConfig | None = Field(
        default=None, description="video -> SRT -> summary pipeline; needs `speech`."
    )
    vision: VisionConfig | None = Field(default=None, description="Detection, embeddings, knowledge base, image RAG.")
    gpu_plan: GPUPlanConfig | None = Field(
        default=None, description="GPU fractions and memory budgets; unset: ray_actor_options from the YAML only."
    )
    gateway: GatewayConfig | None = Field(
        default=None, description="API keys, limits, budgets, usage and the response cache; unset: off."
    )

    @model_validator(mode="after")
    def _one_way_to_authenticate(self) -> AppConfig:
        if self.gateway is not None and self.ingress.api_key_env is not None:
            raise ValueError(
                "ingress.api_key_env and gateway both authenticate: keep one (the gateway's master key "
                "is the admin key; keys it issues replace the static one)"
            )
        return self

    @model_validator(mode="after")
    def _pipeline_needs_speech(self) -> AppConfig:
        if self.video_summary is not None and self.speech is None:
            raise ValueError("video_summary needs a `speech` section")
        return self

    def gpu_capable_deployments(self) -> list[str]:
        """Serve names of the deployments this config runs that can use a GPU."""
        vision = self.vision or VisionConfig()
        optional = {
            "ASR": self.speech,
            "Detector": vision.detector,
            "ClipEmbedder": vision.clip,
            "TextEmbedder": vision.text_embedder,
        }
        return ["LLM", *(name for name, section in optional.items() if section is not None)]

    @model_validator(mode="after")
    def _gpu_plan_holds(self) -> AppConfig:
        plan = self.gpu_plan
        if plan is None:
            return self
        unknown = sorted(set(plan.deployments) - set(self.gpu_capable_deployments()))
        if unknown:
            raise ValueError(
                f"gpu_plan.deployments names {unknown}, which this config does not run on a GPU; "
                f"known: {self.gpu_capable_deployments()}"
            )
        problems = plan.violations()
        claim = plan.claim("LLM")
        utilization = self.llm.gpu_memory_utilization
        if claim is not None and utilization is not None and utilization * plan.card_gb > claim.budget_gb:
            problems.append(
                f"LLM: vLLM preallocates gpu_memory_utilization {utilization:g} x {plan.card_gb:g} GB = "
                f"{utilization * plan.card_gb:g} GB, over its memory budget {claim.budget_gb:g} GB; "
                "leave gpu_memory_utilization unset to derive it from the budget"
            )
        if problems:
            raise ValueError("GPU plan does not fit: " + "; ".join(problems))
        return self

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
