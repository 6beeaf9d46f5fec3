"""Typed application config: the `args:` block of a Serve config file.

Deployment *options* (replicas, resources, autoscaling, max_ongoing_requests)
are not here: they stay in the YAML's `deployments:` list, which Serve applies
by deployment name, so operators tune them without touching Python.

One module per section of `args:` (llm, ingress, speech, vision, knowledge,
pipelines, gpu_plan, gateway), on a strict base (common), assembled and cross-checked in
app. Import from this package, not from the modules, so a section can move
without breaking a caller. No torch and no ray here
(tests/unit/test_import_rules.py): the `plan` command checks a config, and the
unit tests parse one, without loading either.
"""

from serve_app.config.app import (
    AppConfig,
    ConfigError,
    parse_app_config,
    validation_problems,
)
from serve_app.config.batch import (
    BatchConfig,
)
from serve_app.config.common import (
    BatchingConfig,
)
from serve_app.config.gateway import (
    CACHEABLE_ROUTES,
    CacheConfig,
    GatewayConfig,
)
from serve_app.config.gpu_plan import (
    GPUBudget,
    GPUPlanConfig,
)
from serve_app.config.ingress import (
    ConsoleConfig,
    IngressConfig,
)
from serve_app.config.knowledge import (
    QdrantConfig,
)
from serve_app.config.llm import (
    VLLM_OWNED_KWARGS,
    AdapterConfig,
    LLMConfig,
)
from serve_app.config.pipelines import (
    DEFAULT_RAG_PROMPT,
    IMAGE_RAG_LLM,
    RAG_PROMPT_FIELDS,
    VIDEO_SUMMARY_LLM,
    ImageRAGConfig,
    VideoSummaryConfig,
)
from serve_app.config.speech import (
    AlignerConfig,
    DiarizationConfig,
    SpeechConfig,
    SubtitleConfig,
)
from serve_app.config.traffic import (
    AliasConfig,
    AliasTarget,
    TrafficConfig,
)
from serve_app.config.vision import (
    ClipEmbedderConfig,
    DetectorConfig,
    TextEmbedderConfig,
    VisionConfig,
)

__all__ = [
    "BatchConfig",
    # common
    "BatchingConfig",
    # llm
    "AdapterConfig",
    "LLMConfig",
    "VLLM_OWNED_KWARGS",
    # traffic
    "AliasConfig",
    "AliasTarget",
    "TrafficConfig",
    # ingress
    "ConsoleConfig",
    "IngressConfig",
    # speech
    "AlignerConfig",
    "DiarizationConfig",
    "SpeechConfig",
    "SubtitleConfig",
    # vision
    "ClipEmbedderConfig",
    "DetectorConfig",
    "TextEmbedderConfig",
    "VisionConfig",
    # knowledge
    "QdrantConfig",
    # pipelines
    "DEFAULT_RAG_PROMPT",
    "ImageRAGConfig",
    "RAG_PROMPT_FIELDS",
    "VideoSummaryConfig",
    "VIDEO_SUMMARY_LLM",
    "IMAGE_RAG_LLM",
    # gateway
    "CACHEABLE_ROUTES",
    "CacheConfig",
    "GatewayConfig",
    # gpu_plan
    "GPUBudget",
    "GPUPlanConfig",
    # app
    "AppConfig",
    "ConfigError",
    "parse_app_config",
    "validation_problems",
]
