"""Operator tools behind `python -m serve_app`: the launcher, the KubeRay and observability
generators, the GPU plan table, the keys CLI and the tiny-model builder. Nothing a replica imports."""
