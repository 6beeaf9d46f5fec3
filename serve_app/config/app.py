"""The whole `args:` block: AppConfig, the checks that span sections, and parse_app_config.

Checks that need more than one section (a pipeline needs the models it composes, the GPU
plan names only deployments this config runs and fits the LLM's vLLM pool) live here, on
the one model that sees every section. parse_app_config flattens pydantic's errors into one
message naming every bad field by its YAML path, which is what an operator reads when
`serve run` refuses a config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, model_validator

from serve_app.config.batch import BatchConfig
from serve_app.config.common import _repeated, _Strict
from serve_app.config.gateway import GatewayConfig
from serve_app.config.gpu_plan import GPUPlanConfig
from serve_app.config.ingress import IngressConfig
from serve_app.config.llm import LLMConfig
from serve_app.config.pipelines import IMAGE_RAG_LLM, VIDEO_SUMMARY_LLM, VideoSummaryConfig
from serve_app.config.speech import SpeechConfig
from serve_app.config.vision import VisionConfig


class AppConfig(_Strict):
    model_store: Path = Field(default=Path("models"), description="Root of models/<name>/<version>/.")
    data_dir: Path = Field(default=Path("data"), description="Caches and runtime state.")
    llms: list[LLMConfig] = Field(
        min_length=1, description="The LLMs, each its own deployment; `llm:` (one entry) still reads as a list of one."
    )
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
    batch: BatchConfig | None = Field(
        default=None, description="OpenAI's Files and Batch APIs, run on Ray Data; unset: not served."
    )

    @model_validator(mode="after")
    def _one_way_to_authenticate(self) -> AppConfig:
        if self.gateway is not None and self.ingress.api_key_env is not None:
            raise ValueError(
                "ingress.api_key_env and gateway both authenticate: keep one (the gateway's master key "
                "is the admin key; keys it issues replace the static one)"
            )
        return self

    @model_validator(mode="before")
    @classmethod
    def _singular_llm(cls, args: Any) -> Any:
        # Configs written before `llms:` keep working: `llm:` is a list of one, deployed under
        # its old name "LLM" so the YAML's deployment options still apply to it.
        if not isinstance(args, dict) or "llm" not in args:
            return args
        if "llms" in args:
            raise ValueError("give `llms:` (a list) or the older `llm:` (one LLM), not both")
        args = dict(args)
        single = args.pop("llm")
        args["llms"] = [{"deployment": "LLM", **single} if isinstance(single, dict) else single]
        return args

    @property
    def llm(self) -> LLMConfig:
        """The first LLM: the default for pipelines that name none."""
        return self.llms[0]

    @property
    def llm_adapters(self) -> dict[str, str]:
        """Every adapter's id, mapped to its base LLM's id."""
        return {a.name: llm.served_name for llm in self.llms for a in llm.adapters}

    def llm_serving(self, model: str) -> LLMConfig | None:
        """The LLM entry whose deployment answers `model` (its served name or one of its adapters)."""
        return next((llm for llm in self.llms if model in llm.served_ids), None)

    @model_validator(mode="after")
    def _llm_ids_unique(self) -> AppConfig:
        ids = [i for llm in self.llms for i in llm.served_ids]
        names = [llm.deployment_name for llm in self.llms]
        twice = _repeated(ids)
        if twice:
            raise ValueError(f"llms: model ids {twice} are served twice (served_name and adapter names must differ)")
        twice = _repeated(names)
        if twice:
            raise ValueError(f"llms: deployment names {twice} are used twice")
        return self

    @property
    def pipeline_llms(self) -> dict[str, str]:
        """Each pipeline's configured LLM by its YAML path: an LLM, an adapter, or an alias of the
        Ingress's traffic table. The table lives in the Ingress's user_config, which this config does
        not see: the Ingress checks those names when the table is applied (Ingress.reconfigure)."""
        named = {VIDEO_SUMMARY_LLM: self.video_summary and self.video_summary.llm_model}
        if self.vision is not None and self.vision.image_rag is not None:
            named[IMAGE_RAG_LLM] = self.vision.image_rag.llm_model
        return {path: model for path, model in named.items() if model}

    def pipeline_llm(self, path: str) -> str:
        """The LLM the pipeline at `path` is bound to: its own when it names an LLM or adapter, else the
        first LLM (an alias is resolved per request by the Ingress, which names the target it picked)."""
        named = self.pipeline_llms.get(path)
        return named if named and self.llm_serving(named) is not None else self.llm.served_name

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
            "Diarizer": self.speech.diarization if self.speech is not None else None,
            "Detector": vision.detector,
            "ClipEmbedder": vision.clip,
            "TextEmbedder": vision.text_embedder,
        }
        llms = [llm.deployment_name for llm in self.llms]
        return [*llms, *(name for name, section in optional.items() if section is not None)]

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
        for llm in self.llms:
            claim = plan.claim(llm.deployment_name)
            utilization = llm.gpu_memory_utilization
            if claim is not None and utilization is not None and utilization * plan.card_gb > claim.budget_gb:
                problems.append(
                    f"{llm.deployment_name}: vLLM preallocates gpu_memory_utilization {utilization:g} x "
                    f"{plan.card_gb:g} GB = {utilization * plan.card_gb:g} GB, over its memory budget "
                    f"{claim.budget_gb:g} GB; leave gpu_memory_utilization unset to derive it from the budget"
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
        problems = validation_problems(exc)
        if isinstance(args, dict) and "llm" in args:
            problems = problems.replace("llms.0.", "llm.")  # name the field as the config spells it
        raise ConfigError(f"invalid application config: {problems}") from None


def validation_problems(exc: ValidationError) -> str:
    """Every error of `exc`, each at its YAML path: what an operator reads when a config is refused."""
    return "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors())
