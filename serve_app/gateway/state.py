"""The gateway's state behind one small interface: keys, limit counters and the usage log.

Two backends implement `GatewayState`: SQLite (embedded, owned by one GatewayState replica, so
every admission is serialised in one process) and Redis + PostgreSQL (server mode, shared by any
number of ingress replicas; an atomic Lua script admits). Both count the same way:

- requests and tokens per key in fixed one-minute windows (OpenAI's RPM and TPM);
- a request *reserves* its tokens at admission (prompt estimate + max_tokens) and is *settled* to
  what it used when its response ends: the window and the budget get the difference;
- in-flight requests are reservations not yet settled; one whose ingress died stops counting after
  `reservation_ttl_s`;
- a budget refuses once what is spent plus what is reserved reaches it, so concurrent requests
  cannot overshoot it by more than one answer.
Settling is idempotent by reservation id, so an ingress may retry it after the state restarted.

A backend may also *lease* (the embedded one does, serve_app.gateway.leases): an admission that
leaves plenty of a key's minute asks for a slice of what remains, counted in the window at once,
which the asking ingress replica then spends on its own without a call per request. It reports
what it spent (claims, which become ordinary reservations) and gives the rest back when the lease
ends, so the window never holds more than the limit; a refusal while other replicas still hold
slices says when they end (`leased_until`), and the ingress asks once more then.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from serve_app.errors import InvalidRequest
from serve_app.protocol import KeyInfo, UsageResponse

WINDOW_S = 60
LEASE_SHARE = 4  # a lease takes at most this fraction (1/4) of what the key's minute has left
LEASE_MAX_REQUESTS = 256
# Limits a lease cannot carry: in-flight requests and spend are judged where they are counted, per request.
UNLEASABLE = ("max_parallel_requests", "max_budget", "max_audio_seconds", "max_images")

Outcome = Literal["admitted", "unknown", "blocked", "expired", "model", "requests", "tokens", "parallel", "quota"]


@dataclass
class Demand:
    """What one request asks of its key at admission."""

    token: str
    model: str | None
    tokens: int
    images: int
    now: float
    reservation: str
    reservation_ttl_s: float
    lease: str | None = None  # asks the backend for a slice of the key's minute under this id
    lease_ttl_s: float = 0.0


@dataclass
class Grant:
    """A slice of a key's minute leased to one ingress replica, beyond the request that asked for it."""

    id: str
    requests: int
    tokens: int | None  # None: the key has no token limit
    expires_at: float


@dataclass
class Claim:
    """One request an ingress admitted from its lease (`seq` counts them per lease, from 1)."""

    lease: str
    seq: int
    token: str
    reservation: str
    tokens: int
    expires_at: float


@dataclass
class Window:
    """Where the key stands in this minute: OpenAI's x-ratelimit-* headers are made from it."""

    limit_requests: int | None = None
    remaining_requests: int | None = None
    limit_tokens: int | None = None
    remaining_tokens: int | None = None
    reset_s: float = 0.0


@dataclass
class Admission:
    outcome: Outcome
    window: Window = field(default_factory=Window)
    key_alias: str | None = None
    models: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    retry_after_s: float | None = None
    lease: Grant | None = None
    leased_until: float | None = None  # refused, but slices held elsewhere come back by then

    @property
    def admitted(self) -> bool:
        return self.outcome == "admitted"


@dataclass
class Settlement:
    """A request's end: what it used (charged to its reservation) and its usage log entry."""

    token: str
    route: str
    status: int
    latency_ms: float
    ended_at: float
    reservation: str | None = None
    key_alias: str | None = None
    model: str | None = None
    variant: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    audio_seconds: float = 0.0
    images: int = 0
    cache_hit: bool = False
    request_id: str | None = None

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def charged_tokens(self) -> int:
        # A cached answer costs the models nothing: it is logged, not charged.
        return 0 if self.cache_hit else self.total_tokens

    @property
    def charged_images(self) -> int:
        return 0 if self.cache_hit else self.images


class GatewayState(Protocol):
    async def admit(self, demand: Demand) -> Admission: ...

    async def settle(self, settlement: Settlement) -> None: ...

    async def settle_many(self, settlements: list[Settlement]) -> None: ...

    async def create_key(self, token: str, name: str, fields: dict[str, Any], now: float) -> KeyInfo: ...

    async def update_key(self, token: str, fields: dict[str, Any]) -> KeyInfo | None: ...

    async def delete_keys(self, tokens: list[str], aliases: list[str]) -> list[str]: ...

    async def key_info(self, token: str) -> KeyInfo | None: ...

    async def list_keys(self) -> list[KeyInfo]: ...

    async def usage(self, token: str | None, start: float | None, end: float | None, limit: int) -> UsageResponse: ...


class KeyExists(InvalidRequest):
    """A key (or an alias) that is already stored."""

    default_code = "key_exists"


@dataclass
class Counters:
    """What a backend read for one key, for `decide` to judge."""

    requests: int
    tokens: int
    inflight: int
    budget_used: float
    audio_seconds: float
    images: int


def window_of(now: float) -> int:
    return int(now // WINDOW_S)


def window_reset_s(now: float) -> float:
    return (window_of(now) + 1) * WINDOW_S - now


def decide(key: dict[str, Any] | None, demand: Demand, counters: Counters | None) -> Admission:
    """The one admission rule, over a key's stored fields and its counters (None: unknown key)."""
    if key is None:
        return Admission("unknown")
    admission = Admission(
        "admitted", key_alias=key.get("key_alias"), models=key.get("models") or [], metadata=key.get("metadata") or {}
    )
    if key.get("blocked"):
        admission.outcome = "blocked"
        return admission
    if key.get("expires") is not None and key["expires"] <= demand.now:
        admission.outcome = "expired"
        return admission
    if demand.model is not None and admission.models and demand.model not in admission.models:
        admission.outcome = "model"
        return admission
    assert counters is not None
    reset = window_reset_s(demand.now)
    rpm, tpm = key.get("rpm_limit"), key.get("tpm_limit")
    admission.window = Window(limit_requests=rpm, limit_tokens=tpm, reset_s=reset)
    refusal: Outcome | None = None
    if rpm is not None and counters.requests + 1 > rpm:
        refusal = "requests"
    elif tpm is not None and counters.tokens + demand.tokens > tpm:
        refusal = "tokens"
    elif key.get("max_parallel_requests") is not None and counters.inflight >= key["max_parallel_requests"]:
        refusal = "parallel"
    elif _budget_spent(key, counters, demand):
        refusal = "quota"
    requests, tokens = counters.requests, counters.tokens
    if refusal is None:
        requests, tokens = requests + 1, tokens + demand.tokens
    else:
        admission.outcome = refusal
        admission.retry_after_s = None if refusal == "quota" else (1.0 if refusal == "parallel" else reset)
    if rpm is not None:
        admission.window.remaining_requests = max(0, rpm - requests)
    if tpm is not None:
        admission.window.remaining_tokens = max(0, tpm - tokens)
    return admission


def _budget_spent(key: dict[str, Any], counters: Counters, demand: Demand) -> bool:
    tokens = key.get("max_budget")
    audio = key.get("max_audio_seconds")
    images = key.get("max_images")
    return (
        (tokens is not None and counters.budget_used >= tokens)
        or (audio is not None and counters.audio_seconds >= audio)
        or (images is not None and demand.images > 0 and counters.images + demand.images > images)
    )


def lease_size(key: dict[str, Any], demand: Demand, counters: Counters) -> tuple[int, int | None] | None:
    """Requests and tokens (None: no token limit) to lease beyond an admitted demand; None: count each request.

    At most a quarter of what is left, so as the minute fills the slices shrink and the last requests
    are admitted one by one where they are counted: never more than the limit, and little held back.
    """
    if any(key.get(name) is not None for name in UNLEASABLE):
        return None
    rpm, tpm = key.get("rpm_limit"), key.get("tpm_limit")
    requests = LEASE_MAX_REQUESTS
    if rpm is not None:
        requests = min(requests, (rpm - counters.requests - 1) // LEASE_SHARE)
    tokens = None if tpm is None else (tpm - counters.tokens - demand.tokens) // LEASE_SHARE
    if requests < 1 or (tokens is not None and tokens < max(demand.tokens, 1)):
        return None
    return requests, tokens
