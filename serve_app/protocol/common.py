"""What every domain's contracts share, so no domain has to import another for it.

Ids and `created` stamps in OpenAI's format, the lenient request base (OpenAI SDKs send
fields this server does not implement), the model card `/v1/models` lists for every kind of
model, the one error envelope, and the raw-or-base64 image type several domains accept.
This module depends on nothing else in the package; everything else may depend on it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def now() -> int:
    return int(time.time())


class _Request(BaseModel):
    # OpenAI clients send fields this server does not implement (logprobs, tools,
    # user, ...); ignoring unknown ones keeps every SDK version working.
    model_config = ConfigDict(extra="ignore")


def schema_rules(*rules: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    """A model's cross-field rules in its JSON schema (`/openapi.json`), each mirroring one of its validators,
    so a client generated from the schema is refused nothing the schema allows (`model_config`'s
    `json_schema_extra`; a subclass lists its parent's rules again, pydantic does not merge them)."""

    def extra(schema: dict[str, Any]) -> None:
        schema.setdefault("allOf", []).extend(rules)

    return extra


def when(field: str, condition: dict[str, Any], then_field: str, requirement: dict[str, Any]) -> dict[str, Any]:
    """The JSON-schema rule "when `field` is given and matches `condition`, `then_field` must match `requirement`"."""
    return {
        "if": {"required": [field], "properties": {field: condition}},
        "then": {"required": [then_field], "properties": {then_field: requirement}},
    }


# OpenAI's and vLLM's bounds for `seed`: a 64-bit signed integer.
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


def field_error(model: str, field: str, reason: str, value: Any) -> ValidationError:
    """A validation error located at `field` (dotted), for checks that span fields, made in a model validator.

    Pydantic keeps the location of a ValidationError raised in a model validator, so the 400 names
    the field as a field validator's would, whether the model is parsed by FastAPI or a deployment.
    """
    error = PydanticCustomError("value_error", "{reason}", {"reason": reason})
    return ValidationError.from_exception_data(
        model, [InitErrorDetails(type=error, loc=tuple(field.split(".")), input=value)]
    )


class AliasTargetCard(BaseModel):
    model: str
    weight: float


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = Field(default_factory=now)
    owned_by: str = "multimodel-serve"
    kind: str = Field(description="extension: llm, asr, detector, embedder, ...")
    engine: str = Field(description="extension: the engine serving the model on this replica")
    version: str = Field(description="extension: model store version")
    max_model_len: int | None = Field(default=None, description="extension: context window")
    embedding_dimension: int | None = Field(default=None, description="extension: embedding models' vector size")
    input_modalities: list[str] | None = Field(default=None, description="extension: e.g. ['text', 'image']")
    parent: str | None = Field(default=None, description="vLLM's: an adapter's base model id")
    targets: list[AliasTargetCard] | None = Field(default=None, description="extension: an alias's weighted targets")
    fallback: str | None = Field(default=None, description="extension: where an alias goes when a target is full")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


class Deleted(BaseModel):
    id: str
    object: str
    deleted: bool = True


# Images travel as raw bytes (multipart uploads, notebooks) or as base64 strings, optionally
# `data:image/...;base64,` URLs (JSON). Deployments decode them with serve_app.common.images.
ImageData = str | bytes
