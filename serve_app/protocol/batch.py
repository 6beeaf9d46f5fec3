"""OpenAI's Files and Batch API shapes: the file and batch objects, their lists, and a batch's lines.

Field names, statuses and the input/output line shapes are OpenAI's, so a script written against
`client.files.create(purpose="batch")` and `client.batches.create(...)` runs here unchanged.
Depends only on serve_app.protocol.common.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from serve_app.protocol.common import _Request

# What a batch may target, as OpenAI spells it; the runner calls the app's own route for each.
BATCH_ENDPOINTS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")
BatchEndpoint = Literal["/v1/chat/completions", "/v1/completions", "/v1/embeddings"]
# Extension: media routes a batch may target too; a line names its media by `"file": "file-..."`
# (an upload with purpose user_data). Knowledge-base indexing is `/v1/collections/{name}/items`,
# one item per line.
MEDIA_BATCH_ENDPOINTS = (
    "/v1/audio/transcriptions",
    "/v1/audio/translations",
    "/v1/pipelines/video-summary",
    "/v1/detections",
    "/v1/pipelines/image-rag",
)
COLLECTION_ITEMS = re.compile(r"^/v1/collections/([A-Za-z0-9_-]{1,64})/items$")


_ENDPOINT_PATTERN = (
    "^("
    + "|".join((*BATCH_ENDPOINTS, *MEDIA_BATCH_ENDPOINTS))  # plain paths: no character a regex reads
    + r"|/v1/collections/[A-Za-z0-9_-]{1,64}/items)$"
)


def batch_endpoint(endpoint: str) -> str:
    """`endpoint` when a batch may target it, else a ValueError listing what may be."""
    if endpoint in BATCH_ENDPOINTS or endpoint in MEDIA_BATCH_ENDPOINTS or COLLECTION_ITEMS.match(endpoint):
        return endpoint
    allowed = ", ".join([*BATCH_ENDPOINTS, *MEDIA_BATCH_ENDPOINTS, "/v1/collections/{name}/items"])
    raise ValueError(f"{endpoint!r} cannot be run in a batch; allowed: {allowed}")


BatchStatus = Literal[
    "validating", "failed", "in_progress", "finalizing", "completed", "expired", "cancelling", "cancelled"
]
# A batch in one of these is done: nothing runs for it again, and it cannot be cancelled.
FINAL_STATUSES = frozenset({"failed", "completed", "expired", "cancelled"})
FilePurpose = Literal["batch", "batch_output", "user_data"]
UploadPurpose = Literal["batch", "user_data"]  # what a client may upload; batch_output is the runner's

# OpenAI's bounds on `metadata`: 16 pairs, keys up to 64 characters, values up to 512.
METADATA_PAIRS = 16
METADATA_KEY_CHARS = 64
METADATA_VALUE_CHARS = 512


class FileObject(BaseModel):
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: FilePurpose
    status: Literal["uploaded", "processed", "error"] = "processed"
    expires_at: int | None = None
    status_details: str | None = None


class FileList(BaseModel):
    object: Literal["list"] = "list"
    data: list[FileObject]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


class FileDeleted(BaseModel):
    id: str
    object: Literal["file"] = "file"
    deleted: bool = True


def check_metadata(metadata: dict[str, str] | None) -> dict[str, str] | None:
    """OpenAI's limits on `metadata`, as one readable message when broken."""
    if metadata is None:
        return None
    if len(metadata) > METADATA_PAIRS:
        raise ValueError(f"at most {METADATA_PAIRS} key-value pairs, got {len(metadata)}")
    for key, value in metadata.items():
        if len(key) > METADATA_KEY_CHARS:
            raise ValueError(f"key {key[:20]!r}... is over {METADATA_KEY_CHARS} characters")
        if len(value) > METADATA_VALUE_CHARS:
            raise ValueError(f"the value of {key!r} is over {METADATA_VALUE_CHARS} characters")
    return metadata


class BatchCreateRequest(_Request):
    input_file_id: str = Field(min_length=1)
    endpoint: str = Field(
        description="OpenAI's `/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`; extension: "
        + ", ".join(f"`{e}`" for e in MEDIA_BATCH_ENDPOINTS)
        + ", `/v1/collections/{name}/items`.",
        # The schema says what the validator allows, so a client generated from it sends nothing refused.
        json_schema_extra={"pattern": _ENDPOINT_PATTERN},
    )
    completion_window: Literal["24h"]
    metadata: dict[str, str] | None = Field(
        default=None,
        description=f"At most {METADATA_PAIRS} pairs, keys up to {METADATA_KEY_CHARS} characters, values up to "
        f"{METADATA_VALUE_CHARS}. Extension: `cache: warm` also stores each answer in the gateway's response cache.",
    )

    _metadata_bounds = field_validator("metadata")(check_metadata)
    _endpoint_allowed = field_validator("endpoint")(batch_endpoint)


class BatchRequestCounts(BaseModel):
    total: int = 0
    completed: int = 0
    failed: int = 0


class BatchError(BaseModel):
    code: str
    message: str
    param: str | None = None
    line: int | None = None


class BatchErrors(BaseModel):
    object: Literal["list"] = "list"
    data: list[BatchError]


class BatchUsage(BaseModel):
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    input_tokens_details: dict[str, int] = Field(default_factory=lambda: {"cached_tokens": 0})
    output_tokens_details: dict[str, int] = Field(default_factory=lambda: {"reasoning_tokens": 0})


class Batch(BaseModel):
    id: str
    object: Literal["batch"] = "batch"
    endpoint: str
    errors: BatchErrors | None = None
    input_file_id: str
    completion_window: str = "24h"
    status: BatchStatus = "validating"
    output_file_id: str | None = None
    error_file_id: str | None = None
    created_at: int
    in_progress_at: int | None = None
    expires_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    request_counts: BatchRequestCounts = Field(default_factory=BatchRequestCounts)
    metadata: dict[str, str] | None = None
    usage: BatchUsage | None = None


class BatchList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Batch]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


class BatchInputLine(BaseModel):
    """One line of a batch's input file, as OpenAI takes it."""

    custom_id: str = Field(min_length=1)
    method: Literal["POST"]
    url: str
    body: dict[str, Any]


class BatchLineResponse(BaseModel):
    status_code: int
    request_id: str
    body: dict[str, Any] | str = Field(description="A JSON answer, or a text one (SRT, VTT, text) as a string.")


class BatchLineError(BaseModel):
    code: str | None = None
    message: str


class BatchOutputLine(BaseModel):
    """One line of a batch's output or error file, exactly as OpenAI writes them."""

    id: str
    custom_id: str
    response: BatchLineResponse | None = None
    error: BatchLineError | None = None
