"""The gateway section: API keys, their limits and budgets, usage accounting and the response cache.

Off when `gateway:` is absent (and `ingress.api_key_env`, one static key, stays the simplest
option). Secrets never sit in the YAML: the master key, the Redis URL and the PostgreSQL DSN
are named by environment variables read in the replicas.

    gateway:
      master_key_env: SERVE_MASTER_KEY
      state: embedded                # SQLite under <data_dir>/gateway, owned by one GatewayState replica
      cache: {routes: [embeddings], ttl_s: 300, max_entries: 1024}
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from serve_app.config.common import _Strict

CACHEABLE_ROUTES = ("chat", "completions", "embeddings")


class CacheConfig(_Strict):
    """Exact-match response cache in each ingress replica, for deterministic requests only.

    A request is cached when its route is listed here, when its key's `metadata.cache` is true,
    or when it sends `x-cache-control: cache`; `x-cache-control: no-cache` always bypasses.
    Chat and completions qualify only at temperature 0; streams are never cached.
    """

    routes: list[Literal["chat", "completions", "embeddings"]] = Field(
        default_factory=list, description="Routes cached for every key; others only on request or per key."
    )
    ttl_s: float = Field(default=300.0, gt=0.0, description="How long an answer may be served again.")
    max_entries: int = Field(default=1024, ge=1, description="Least recently used entries go beyond this.")
    max_entry_bytes: int = Field(default=1 << 20, ge=1024, description="Larger answers are not cached.")


class GatewayConfig(_Strict):
    master_key_env: str = Field(
        default="SERVE_MASTER_KEY",
        description="Environment variable holding the admin key (key routes, everyone's /usage, every model).",
    )
    state: Literal["embedded", "server"] = Field(
        default="embedded",
        description="embedded: SQLite under <data_dir>/gateway, one GatewayState replica; "
        "server: Redis counters and PostgreSQL keys and usage, shared by every ingress replica.",
    )
    redis_url_env: str = Field(default="SERVE_REDIS_URL", description="server mode: variable with redis://...")
    postgres_dsn_env: str = Field(default="SERVE_POSTGRES_DSN", description="server mode: variable with the DSN.")
    timeout_s: float = Field(
        default=2.0, gt=0.0, le=30.0, description="A state call slower than this is a 503, never a hang."
    )
    fail_open: bool = Field(
        default=False,
        description="When the limit counters cannot be reached, admit known keys without limits instead of 503.",
    )
    default_max_tokens: int = Field(
        default=1024, ge=1, description="Tokens reserved for a completion that names no max_tokens."
    )
    lease_s: float = Field(
        default=0.5,
        ge=0.0,
        le=10.0,
        description="embedded state: how long an ingress replica may admit from a slice of a key's minute on its "
        "own; a key blocked or changed through another replica is seen within this. 0: every request asks the state.",
    )
    reservation_ttl_s: float = Field(
        default=600.0, gt=0.0, description="A reservation never settled (its ingress died) stops counting after this."
    )
    cache: CacheConfig | None = Field(default=None, description="Response cache; unset: off (x-cache: bypass).")
