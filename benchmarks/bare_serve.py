"""A bare Serve app: the platform's hops and batching around no model at all.

The proxy, a FastAPI ingress replica that reads the request (JSON with a base64 image, or a
multipart upload) and makes one handle call, and a model replica whose `@serve.batch` method
returns at once: what Ray Serve itself costs a vision request on this machine.
`benchmarks/vision_bound.py` deploys it beside the real app; its import path needs the repository
on the workers' PYTHONPATH (the benchmark sets it in the app's runtime env).
"""

from __future__ import annotations

import base64

from fastapi import FastAPI, Request
from ray import serve

api = FastAPI()


@serve.deployment
class NoModel:
    """`batching`: per method, the real model's `{max_batch_size, batch_wait_timeout_s}` (CLIP's for embed,
    YOLO's for detect): a lone request then waits for companions exactly as long as it would there."""

    def __init__(self, batching: dict[str, dict]) -> None:
        for name, batcher in (("embed", self.embed), ("detect", self.detect)):
            batcher.set_max_batch_size(batching[name]["max_batch_size"])
            batcher.set_batch_wait_timeout_s(batching[name]["batch_wait_timeout_s"])

    @serve.batch
    async def embed(self, images: list[bytes]) -> list[int]:
        return [len(images)] * len(images)

    @serve.batch
    async def detect(self, images: list[bytes]) -> list[int]:
        return [len(images)] * len(images)


@serve.deployment
@serve.ingress(api)
class BareIngress:
    def __init__(self, model) -> None:
        self._model = model

    @api.post("/v1/embeddings")
    async def embeddings(self, request: Request) -> dict:
        body = await request.json()
        batch = await self._model.embed.remote(base64.b64decode(body["input"][0]["image"]))
        return {
            "object": "list",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.0]}],
            "batch_size": batch,
        }

    @api.post("/v1/detections")
    async def detections(self, request: Request) -> dict:
        form = await request.form()
        upload = form["image"]
        batch = await self._model.detect.remote(await upload.read())  # type: ignore[union-attr]
        return {"model": form["model"], "detections": [], "batch_size": batch}


def build_app(args: dict) -> serve.Application:
    return BareIngress.bind(NoModel.bind(args["batching"]))
