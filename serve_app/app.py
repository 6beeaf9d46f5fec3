"""The application builder: Serve's `import_path` target.

import_path: serve_app.app:build_app
args: {...}            # validated into AppConfig; a bad field fails the deploy by name
"""

from __future__ import annotations

from ray.serve import Application

from deployments.llm import LLMDeployment
from serve_app.config import AppConfig, parse_app_config
from serve_app.ingress import Ingress


def build_app(args: dict) -> Application:
    config = args if isinstance(args, AppConfig) else parse_app_config(args)
    llm = LLMDeployment.bind(config.llm, config.model_store, config.data_dir)
    # Handles by kind and served name (routes pick by the request's `model`), and by role.
    models = {"llm": {config.llm.served_name: llm}}
    services = {}
    if config.speech is not None:
        from deployments.asr import ASRDeployment

        asr = ASRDeployment.bind(config.speech, config.model_store, config.data_dir)
        # Aliases (e.g. OpenAI's whisper-1) route to the same deployment and list as their own ids.
        models["asr"] = {name: asr for name in (config.speech.served_name, *config.speech.aliases)}
        if config.video_summary is not None:
            from pipelines.video_summary import VideoSummaryDeployment

            services["video_summary"] = VideoSummaryDeployment.bind(asr, llm, config.video_summary)
    return Ingress.bind(models, services, config.ingress)
