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
    return Ingress.bind(models, services, config.ingress)
