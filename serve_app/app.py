"""The application builder: Serve's `import_path` target.

import_path: serve_app.app:build_app
args: {...}            # validated into AppConfig; a bad field fails the deploy by name
"""

from __future__ import annotations

from ray.serve import Application, Deployment

from deployments.llm.deployment import LLM
from serve_app.config import AppConfig, parse_app_config
from serve_app.http.ingress import Ingress


def build_app(args: dict) -> Application:
    config = args if isinstance(args, AppConfig) else parse_app_config(args)
    # Handles by kind and served id (routes pick by the request's `model`), and by role. Every
    # id an LLM deployment answers (its base model and its adapters) maps to that deployment.
    llms: dict[str, Application] = {}
    for entry in config.llms:
        llm = bind_planned(LLM.options(name=entry.deployment_name), config, entry, config.model_store, config.data_dir)
        llms.update(dict.fromkeys(entry.served_ids, llm))
    models: dict[str, dict[str, Application]] = {"llm": llms}
    services: dict[str, Application] = {}
    if config.speech is not None:
        add_speech(config, llms, models, services)
    if config.vision is not None:
        add_vision(config, llms, models, services)
    if config.gateway is not None and config.gateway.state == "embedded":
        from deployments.gateway_state import GatewayState
        from serve_app.gateway.service import STATE_SERVICE

        services[STATE_SERVICE] = GatewayState.bind(config.data_dir)
    return Ingress.bind(models, services, config.ingress, config.gateway, config.llm_adapters, config.pipeline_llms)


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


def add_speech(config: AppConfig, llms: dict[str, Application], models: dict, services: dict) -> None:
    """The ASR as a model (plus aliases such as OpenAI's whisper-1); the video summary as a service."""
    from deployments.asr import ASR

    asr = bind_planned(ASR, config, config.speech, config.model_store, config.data_dir)
    models["asr"] = {name: asr for name in (config.speech.served_name, *config.speech.aliases)}
    if config.video_summary is not None:
        from pipelines.video_summary import VideoSummary

        summary = config.video_summary
        llm = llms[config.pipeline_llm("video_summary.llm_model")]
        services["video_summary"] = VideoSummary.bind(asr, llm, summary, llms, config.llm_adapters)


def add_vision(config: AppConfig, llms: dict[str, Application], models: dict, services: dict) -> None:
    """Detector and embedders as models by served name; the knowledge base and image RAG as services."""
    from deployments.detector import Detector
    from deployments.embedder import ClipEmbedder
    from deployments.text_embedder import TextEmbedder
    from deployments.vector_store import VectorStore
    from pipelines.image_rag import ImageRAG, RAGHandles, RAGModels
    from serve_app.common.images import ImageLimits

    vision = config.vision
    limits = ImageLimits(max_bytes=vision.max_image_bytes, max_pixels=vision.max_image_pixels)
    detector = clip = None
    if vision.detector is not None:
        detector = bind_planned(Detector, config, vision.detector, config.model_store, config.data_dir, limits)
        models["detector"] = {vision.detector.served_name: detector}
    embedders = {}
    if vision.clip is not None:
        clip = bind_planned(ClipEmbedder, config, vision.clip, config.model_store, config.data_dir, limits)
        embedders[vision.clip.served_name] = clip
    if vision.text_embedder is not None:
        embedders[vision.text_embedder.served_name] = bind_planned(
            TextEmbedder, config, vision.text_embedder, config.data_dir
        )
    if embedders:
        models["embedding"] = embedders
    if vision.qdrant is None:
        return
    detector_name = vision.detector.served_name if vision.detector else None
    store = VectorStore.bind(vision.qdrant, config.data_dir, embedders, detector, detector_name)
    services["vector_store"] = store
    rag = vision.image_rag
    if rag is not None:
        llm_model = config.pipeline_llm("vision.image_rag.llm_model")
        handles = RAGHandles(detector=detector, embedder=clip, store=store, llm=llms[llm_model])
        names = RAGModels(detector=detector_name, embedder=vision.clip.served_name, llm=llm_model)
        services["image_rag"] = ImageRAG.bind(handles, names, rag, limits, llms, config.llm_adapters)
