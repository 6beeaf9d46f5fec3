"""What any replica may import: the model store, the GPU plan, media and image decoding, subtitles,
metric definitions, the offline runtime and the LLM handles by id.

Like the contracts (serve_app.protocol, serve_app.config, serve_app.errors) these import nothing from
the HTTP layer, the gateway, the operator tools, deployments/ or pipelines/ (tests/unit/test_import_rules.py),
so a model replica loads them without FastAPI and the ingress loads them without a model stack.
"""
