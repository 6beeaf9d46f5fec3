"""Vision contracts: object detection (an extension) and `/v1/embeddings`.

Embeddings sit here because one endpoint serves both the CLIP model, which embeds images
and text into one space, and the text-only embedder; image inputs are the extension that
OpenAI's text-only embeddings API lacks. Detections are reused by the knowledge base (stored
in an item's payload) and by the image-RAG pipeline.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from serve_app.protocol.common import ImageData, _Request, new_id, now


class DetectionRequest(_Request):
    """extension (not an OpenAI API): object detection on one image."""

    model: str = Field(min_length=1)
    image: ImageData = Field(description="Encoded image: raw bytes, base64, or a data URL.")
    conf: float = Field(default=0.25, ge=0.0, le=1.0, description="Minimum score kept.")
    iou: float = Field(default=0.7, ge=0.0, le=1.0, description="NMS IoU threshold.")
    max_det: int = Field(default=300, ge=1, le=1000)
    classes: list[int | str] | None = Field(default=None, description="Keep only these class ids or labels.")


class Box(BaseModel):
    """Corners in pixels of the original image (xyxy)."""

    x1: float
    y1: float
    x2: float
    y2: float


class Detection(BaseModel):
    box: Box
    label: str
    class_id: int
    score: float


class DetectionResponse(BaseModel):
    id: str = Field(default_factory=lambda: new_id("det"))
    object: Literal["detection"] = "detection"
    created: int = Field(default_factory=now)
    model: str
    width: int
    height: int
    detections: list[Detection]
    batch_size: int = Field(description="extension: how many images shared this forward pass")


class ImageInput(_Request):
    """extension: an image where OpenAI allows only text (embeddings input, search queries)."""

    image: ImageData


EmbeddingInput = str | ImageInput


def _bound_list(schema: dict[str, Any]) -> None:
    """The list branch of `input` holds 1 to 2048 items (OpenAI's bound), which pydantic cannot say on a union."""
    schema["anyOf"][1].update(minItems=1, maxItems=2048)


class EmbeddingRequest(_Request):
    model: str = Field(min_length=1)
    input: str | list[EmbeddingInput] = Field(
        description="A string or a list of strings; list items may also be {'image': base64} (extension).",
        json_schema_extra=_bound_list,
    )
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1, description="Only the model's own dimension is served.")

    @field_validator("input")
    @classmethod
    def _not_empty(cls, value: str | list[EmbeddingInput]) -> str | list[EmbeddingInput]:
        if isinstance(value, list) and not value:
            raise ValueError("input must not be an empty list")
        if isinstance(value, list) and len(value) > 2048:
            raise ValueError("at most 2048 inputs per request")
        return value

    @property
    def inputs(self) -> list[EmbeddingInput]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str = Field(description="Floats, or little-endian float32 bytes in base64.")


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage
    batch_size: int = Field(description="extension: the largest batch one of this request's inputs rode in")
