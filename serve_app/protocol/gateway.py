"""Gateway contracts: key admin in LiteLLM's shapes, and the usage log.

LiteLLM's proxy routes and field names (`/key/generate` with `models`, `rpm_limit`, `tpm_limit`,
`max_parallel_requests`, `max_budget`, `duration`, `metadata`, `key_alias`, answering `{"key": ...}`;
`token` is the stored hash of a key), so its users' admin scripts work unchanged. Unknown LiteLLM
fields (team_id, budget_duration, ...) are accepted and ignored, as an OpenAI request's are.
Differences, marked "extension": `max_budget` counts tokens (this server prices nothing in USD),
and `max_audio_seconds` / `max_images` budget the speech and vision routes.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from serve_app.protocol.common import _Request


class KeyLimits(_Request):
    """What a key may carry; every field optional (unset: no such limit)."""

    key_alias: str | None = Field(default=None, max_length=256)
    models: list[str] | None = Field(default=None, description="Allowed `model` values; unset or []: every model.")
    rpm_limit: int | None = Field(default=None, ge=0)
    tpm_limit: int | None = Field(default=None, ge=0)
    max_parallel_requests: int | None = Field(default=None, ge=0)
    max_budget: float | None = Field(default=None, ge=0, description="extension: in tokens, not USD")
    max_audio_seconds: float | None = Field(default=None, ge=0, description="extension: transcription budget")
    max_images: int | None = Field(default=None, ge=0, description="extension: detection/embedding images budget")
    duration: str | None = Field(
        default=None, description="Lifetime from now: `30s`, `15m`, `12h`, `30d`; unset: none."
    )
    metadata: dict[str, Any] | None = Field(default=None, description="`metadata.cache: true` caches this key's calls.")
    user_id: str | None = Field(default=None, max_length=256)
    blocked: bool | None = None


class KeyGenerateRequest(KeyLimits):
    key: str | None = Field(default=None, description="A key of your own (`sk-...`) instead of a generated one.")


class KeyUpdateRequest(KeyLimits):
    key: str = Field(description="The key, or its `token` (hash).")


class KeyDeleteRequest(_Request):
    keys: list[str] = Field(default_factory=list, description="Keys or their tokens (hashes).")
    key_aliases: list[str] = Field(default_factory=list)


class KeyRef(_Request):
    key: str = Field(description="The key, or its `token` (hash).")


class KeyInfo(BaseModel):
    token: str = Field(description="sha256 of the key: all that is stored")
    key_name: str = Field(description="The key abbreviated, `sk-...abcd`, to recognise it")
    key_alias: str | None = None
    models: list[str] = Field(default_factory=list)
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    max_parallel_requests: int | None = None
    max_budget: float | None = None
    max_audio_seconds: float | None = None
    max_images: int | None = None
    spend: float = Field(default=0.0, description="extension: tokens spent")
    audio_seconds: float = Field(default=0.0, description="extension: audio seconds spent")
    images: int = Field(default=0, description="extension: images spent")
    expires: str | None = Field(default=None, description="ISO 8601 UTC, or null for never")
    created_at: str
    metadata: dict[str, Any] = Field(default_factory=dict)
    user_id: str | None = None
    blocked: bool = False


class GeneratedKey(KeyInfo):
    key: str = Field(description="The key itself: shown once, never stored")


class KeyInfoResponse(BaseModel):
    key: str
    info: KeyInfo


class KeyList(BaseModel):
    keys: list[str | KeyInfo]
    total_count: int
    current_page: int = 1
    total_pages: int = 1


class KeysDeleted(BaseModel):
    deleted_keys: list[str]


class UsageEntry(BaseModel):
    """One request in the usage log (extension: this server's /usage)."""

    id: int
    created: float = Field(description="Unix time the request ended")
    token: str
    key_alias: str | None = None
    route: str
    model: str | None = None
    variant: str | None = Field(default=None, description="What answered: x-model-variant, else the model")
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    audio_seconds: float = 0.0
    images: int = 0
    status: int
    latency_ms: float
    cache_hit: bool = False
    request_id: str | None = None


class UsageTotals(BaseModel):
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    audio_seconds: float = 0.0
    images: int = 0
    cache_hits: int = 0


class UsageResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[UsageEntry]
    totals: UsageTotals
    has_more: bool = False
