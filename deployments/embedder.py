"""The OpenCLIP deployment: text and image embeddings in one space, batched across requests.

clip = serve.get_deployment_handle("ClipEmbedder", app_name="default")
reply = await clip.embed.remote({"model": "tiny-clip", "input": ["a red square", {"image": b64}]})
await clip.stats.remote()   # batch-size histogram
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
from ray import serve

from deployments.batch_stats import BatchStats
from deployments.embedding_common import EmbeddingDeployment, unit_rows
from serve_app.common.gpu_plan import GPUClaim
from serve_app.common.images import ImageLimits, decode_image
from serve_app.config import ClipEmbedderConfig
from serve_app.errors import parse_request
from serve_app.protocol import EmbeddingInput, ImageInput


def _as_image(item, limits: ImageLimits, param: str):
    """A PIL image from an ImageInput (or its dict form); PIL images (pipeline crops) pass through."""
    from PIL import Image

    if isinstance(item, Image.Image):
        return item.convert("RGB")
    image = item.image if isinstance(item, ImageInput) else parse_request(ImageInput, item).image
    return decode_image(image, limits, param)


@serve.deployment(name="ClipEmbedder")
class ClipEmbedder(EmbeddingDeployment):
    library, modalities = "open_clip", ("text", "image")

    def __init__(
        self,
        config: ClipEmbedderConfig,
        model_store: Path,
        data_dir: Path,
        limits: ImageLimits,
        gpu: GPUClaim | None = None,
    ):
        super().__init__(
            config.served_name, data_dir, gpu, model_store=model_store, model=config.model, version=config.version
        )
        import open_clip
        import torch

        self._limits = limits
        self._torch = torch
        source = f"local-dir:{self.model_path}"  # never a hub name: nothing is downloaded
        precision = "fp16" if self.device == "cuda" else "fp32"
        self._model, _, self._preprocess = open_clip.create_model_and_transforms(
            source, device=self.device, precision=precision
        )
        self._model.eval()
        self._tokenizer = open_clip.get_tokenizer(source)
        self._dimension = int(self._encode_texts(["warm-up"])[0].shape[0])
        self._stats = BatchStats(self.served_name)
        for batcher in (self._text_batch, self._image_batch):
            batcher.set_max_batch_size(config.batching.max_batch_size)
            batcher.set_batch_wait_timeout_s(config.batching.batch_wait_timeout_s)
        self._announce_loaded(f"{self._dimension}-d")

    async def embed_inputs(self, inputs: list[EmbeddingInput]) -> list[tuple[np.ndarray, int]]:
        """Unit vectors (and the batch each rode in) for texts and images; used by the store and pipelines."""
        # Decode every image first, so one bad image rejects the request before any model work.
        decoded = [
            item if isinstance(item, str) else _as_image(item, self._limits, f"input.{i}.image")
            for i, item in enumerate(inputs)
        ]
        return await asyncio.gather(
            *(self._text_batch(item) if isinstance(item, str) else self._image_batch(item) for item in decoded)
        )

    async def check_health(self) -> None:
        await self._text_batch("health check")

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.01)
    async def _text_batch(self, texts: list[str]) -> list[tuple[np.ndarray, int]]:
        return await self._stats.run(self._encode_texts, texts)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.01)
    async def _image_batch(self, images: list) -> list[tuple[np.ndarray, int]]:
        return await self._stats.run(self._encode_images, images)

    def _encode_texts(self, texts: list[str]) -> np.ndarray:
        tokens = self._tokenizer(texts).to(self.device)
        with self._torch.inference_mode():
            return unit_rows(self._model.encode_text(tokens).float().cpu().numpy())

    def _encode_images(self, images: list) -> np.ndarray:
        pixels = self._torch.stack([self._preprocess(image) for image in images]).to(self.device)
        if self.device == "cuda":
            pixels = pixels.half()
        with self._torch.inference_mode():
            return unit_rows(self._model.encode_image(pixels).float().cpu().numpy())

    def _token_count(self, item: EmbeddingInput) -> int:
        if not isinstance(item, str):
            return 0
        return int((self._tokenizer([item]) != 0).sum())
