"""The application builder: Serve's `import_path` target.

import_path: serve_app.app:build_app
args: {...}            # validated into AppConfig; a bad field fails the deploy by name
"""

from __future__ import annotations

from ray.serve import Application, Deployment

from deployments.llm.deployment import LLM
from serve_app.common.images import ImageLimits
from serve_app.common.model_registry import ModelRegistry
from serve_app.config import IMAGE_RAG_LLM, VIDEO_SUMMARY_LLM, AppConfig, parse_app_config
from serve_app.http.ingress import Ingress


def build_app(args: dict) -> Application:
    config = args if isinstance(args, AppConfig) else parse_app_config(args)
    # One registry of every model's handle, by kind and by every id it answers (an LLM's adapters map
    # to its deployment), shared by the Ingress and the pipelines; routes pick by the request's `model`.
    models = ModelRegistry(adapters=config.llm_adapters)
    for entry in config.llms:
        llm = bind_planned(LLM.options(name=entry.deployment_name), config, entry, config.model_store, config.data_dir)
        models.add("llm", entry.served_ids, llm)
    services: dict[str, Application] = {}
    if config.speech is not None:
        add_speech(config, models, services)
    if config.vision is not None:
        add_vision(config, models, services)
    if config.gateway is not None and config.gateway.state == "embedded":
        from deployments.gateway_state import EmbeddedGatewayState
        from serve_app.gateway.service import STATE_SERVICE

        services[STATE_SERVICE] = EmbeddedGatewayState.bind(config.data_dir)
    batch = None
    if config.batch is not None:
        from deployments.batch_runner import BatchRunner

        # Resolved once here, so the Ingress (uploads) and the runner (results) share one directory.
        batch = config.batch.model_copy(update={"files_dir": config.batch.files_path(config.data_dir)})
        services["batch_runner"] = BatchRunner.bind(batch, config.data_dir)
    return Ingress.bind(models, services, config.ingress, config.gateway, config.pipeline_llms, batch)


def bind_planned(deployment: Deployment, config: AppConfig, *args) -> Application:
    """`deployment.bind(*args)`, placed by the gpu_plan when it names the deployment.

    The plan's num_gpus/num_cpus become its actor options, and each replica gets the
    claim it re-checks against the card it lands on.
    """
    budget = config.gpu_plan.deployments.get(deployment.name) if config.gpu_plan else None
    if budget is None:
        return deployment.bind(*args)
    placed = deployment.options(ray_actor_options=budget.actor_options())
    return placed.bind(*args, gpu=config.gpu_plan.claim(deployment.name))


def add_speech(config: AppConfig, models: ModelRegistry, services: dict) -> None:
    """The ASR as a model (plus aliases such as OpenAI's whisper-1), the Diarizer beside it when configured;
    the video summary as a service."""
    from deployments.asr import ASR

    speech = config.speech
    asr = bind_planned(ASR, config, speech, config.model_store, config.data_dir)
    models.add("asr", (speech.served_name, *speech.aliases), asr)
    diarizer_name = None
    if speech.diarization is not None:
        from deployments.diarizer import Diarizer

        diarization = speech.diarization
        diarizer = bind_planned(
            Diarizer,
            config,
            diarization,
            config.model_store,
            config.data_dir,
            speech.max_media_bytes,
            speech.max_audio_seconds,
        )
        models.add("diarizer", (diarization.served_name,), diarizer)
        diarizer_name = diarization.served_name
    if config.video_summary is not None:
        from pipelines.video_summary import VideoSummaryPipeline

        llm = config.pipeline_llm(VIDEO_SUMMARY_LLM)
        services["video_summary"] = VideoSummaryPipeline.bind(
            models, config.video_summary, speech.served_name, llm, diarizer_name
        )


def add_vision(config: AppConfig, models: ModelRegistry, services: dict) -> None:
    """Detector and embedders as models by served name; the knowledge base and image RAG as services."""
    from deployments.detector import Detector
    from deployments.embedder import ClipEmbedder
    from deployments.text_embedder import TextEmbedder
    from deployments.vector_store import VectorStore
    from pipelines.image_rag import ImageRAG, RAGModels

    vision = config.vision
    limits = ImageLimits(max_bytes=vision.max_image_bytes, max_pixels=vision.max_image_pixels)
    detector = None
    if vision.detector is not None:
        detector = bind_planned(Detector, config, vision.detector, config.model_store, config.data_dir, limits)
        models.add("detector", (vision.detector.served_name,), detector)
    embedders = {}
    if vision.clip is not None:
        clip = bind_planned(ClipEmbedder, config, vision.clip, config.model_store, config.data_dir, limits)
        embedders[vision.clip.served_name] = clip
    if vision.text_embedder is not None:
        embedders[vision.text_embedder.served_name] = bind_planned(
            TextEmbedder, config, vision.text_embedder, config.data_dir
        )
    for name, embedder in embedders.items():
        models.add("embedding", (name,), embedder)
    if vision.qdrant is None:
        return
    detector_name = vision.detector.served_name if vision.detector else None
    store = VectorStore.bind(vision.qdrant, config.data_dir, embedders, detector, detector_name)
    services["vector_store"] = store
    if vision.image_rag is not None:
        names = RAGModels(
            detector=detector_name, embedder=vision.clip.served_name, llm=config.pipeline_llm(IMAGE_RAG_LLM)
        )
        services["image_rag"] = ImageRAG.bind(models, store, names, vision.image_rag, limits)
