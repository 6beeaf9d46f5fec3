"""What the embedding deployments share: their card, the OpenAI `embed` method (and `embed_many`, a batch's
lines in one call), response shaping, batch statistics."""

from __future__ import annotations

import asyncio
import base64
from typing import ClassVar

import numpy as np

from deployments.base import ModelDeployment
from deployments.batch_stats import BatchStats
from serve_app.errors import APIError, InvalidRequest, as_api_error, parse_request
from serve_app.protocol import (
    Embedding,
    EmbeddingInput,
    EmbeddingRequest,
    EmbeddingResponse,
    EmbeddingUsage,
    ModelCard,
)


def check_dimensions(request: EmbeddingRequest, native: int) -> None:
    # Neither CLIP nor MiniLM is trained for truncated (Matryoshka) vectors: serve only the native size.
    if request.dimensions is not None and request.dimensions != native:
        raise InvalidRequest(
            f"model '{request.model}' produces {native}-dimensional embeddings and cannot shorten them; "
            f"omit `dimensions` or pass {native}.",
            param="dimensions",
        )


def encode_vector(vector: np.ndarray, encoding_format: str) -> list[float] | str:
    vector = np.asarray(vector, dtype=np.float32)
    if encoding_format == "base64":
        # What the OpenAI SDK decodes: little-endian float32 bytes, base64.
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return vector.tolist()


def embedding_response(
    request: EmbeddingRequest, vectors: list[np.ndarray], batch_sizes: list[int], tokens: int
) -> EmbeddingResponse:
    return EmbeddingResponse(
        data=[Embedding(index=i, embedding=encode_vector(v, request.encoding_format)) for i, v in enumerate(vectors)],
        model=request.model,
        usage=EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens),
        batch_size=max(batch_sizes),
    )


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.maximum(norms, 1e-12)


class EmbeddingDeployment(ModelDeployment):
    """A model deployment answering `embed` in OpenAI's shape, over its own `embed_inputs` and `_token_count`.

    `modalities` are the inputs it embeds, as its card lists them.
    """

    kind = "embedding"
    modalities: ClassVar[tuple[str, ...]]
    _dimension: int
    _stats: BatchStats

    def card(self, **extra) -> ModelCard:
        return super().card(embedding_dimension=self._dimension, input_modalities=list(self.modalities), **extra)

    async def embed_inputs(self, inputs: list[EmbeddingInput]) -> list[tuple[np.ndarray, int]]:
        raise NotImplementedError

    def _token_count(self, item: EmbeddingInput) -> int:
        raise NotImplementedError

    def stats(self) -> dict:
        return self._stats.snapshot()

    async def embed_many(self, requests: list[EmbeddingRequest | dict]) -> list[EmbeddingResponse | APIError]:
        """Many requests in one call (a batch's lines): each answered as `embed` answers it, or with its own
        error; their inputs share the model's batches, and the caller makes one handle call, not one each."""
        answers = await asyncio.gather(*(self.embed(request) for request in requests), return_exceptions=True)
        return [a if isinstance(a, EmbeddingResponse) else as_api_error(a) for a in answers]

    async def embed(self, request: EmbeddingRequest | dict) -> EmbeddingResponse:
        request = parse_request(EmbeddingRequest, request)
        check_dimensions(request, self._dimension)
        results = await self.embed_inputs(request.inputs)
        tokens = sum(self._token_count(item) for item in request.inputs)
        return embedding_response(request, [v for v, _ in results], [b for _, b in results], tokens)
