"""The gateway's server mode: keys and the usage log in PostgreSQL, limit counters in Redis.

Every ingress replica talks to both directly, so limits hold across replicas and nodes: the
admission is one Lua script, atomic in Redis, that reads the key's window, in-flight
reservations and spend and commits the reservation only if all of them allow it. The key's own
state (blocked, expired, models, audio and image budgets) is read from PostgreSQL first.

Settling writes PostgreSQL first (the usage row, unique by reservation id, and the key's spend in
one transaction), then releases the reservation in Redis; both steps skip what was done before,
so a retry after either failed counts once. Redis holds `spend` as a cache initialised from
PostgreSQL, so a restarted (empty) Redis refuses nothing it should not and no budget resets.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, cast

from serve_app.config import GatewayConfig
from serve_app.gateway.sqlite import KEY_FIELDS, USAGE_FIELDS, found, key_info, usage_response, usage_values
from serve_app.gateway.state import (
    Admission,
    Counters,
    Demand,
    KeyExists,
    Outcome,
    Settlement,
    Window,
    decide,
    window_of,
)
from serve_app.gateway.state import window_reset_s as reset_s
from serve_app.protocol import KeyInfo, UsageResponse

SCHEMA = """
CREATE TABLE IF NOT EXISTS gateway_keys (
    token TEXT PRIMARY KEY, key_name TEXT NOT NULL, key_alias TEXT UNIQUE, models JSONB, rpm_limit INTEGER,
    tpm_limit INTEGER, max_parallel_requests INTEGER, max_budget DOUBLE PRECISION,
    max_audio_seconds DOUBLE PRECISION, max_images INTEGER, expires DOUBLE PRECISION, metadata JSONB, user_id TEXT,
    blocked BOOLEAN NOT NULL DEFAULT FALSE, created_at DOUBLE PRECISION NOT NULL,
    spend DOUBLE PRECISION NOT NULL DEFAULT 0, audio_seconds DOUBLE PRECISION NOT NULL DEFAULT 0,
    images INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS gateway_usage (
    id BIGSERIAL PRIMARY KEY, reservation TEXT UNIQUE, created DOUBLE PRECISION NOT NULL, token TEXT NOT NULL,
    key_alias TEXT, route TEXT NOT NULL, model TEXT, variant TEXT, prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL, total_tokens INTEGER NOT NULL, audio_seconds DOUBLE PRECISION NOT NULL,
    images INTEGER NOT NULL, status INTEGER NOT NULL, latency_ms DOUBLE PRECISION NOT NULL,
    cache_hit BOOLEAN NOT NULL, request_id TEXT
);
CREATE INDEX IF NOT EXISTS gateway_usage_by_token ON gateway_usage (token, created);
CREATE INDEX IF NOT EXISTS gateway_usage_by_time ON gateway_usage (created);
"""

# KEYS: window hash, in-flight zset, reserved hash, spend. ARGV: now, rpm, tpm, parallel, budget (-1: none),
# tokens wanted, spend from PostgreSQL, reservation id, its expiry, window, window ttl.
ADMIT = """
local now = tonumber(ARGV[1])
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)) do redis.call('HDEL', KEYS[3], id) end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local requests = tonumber(redis.call('HGET', KEYS[1], 'requests') or '0')
local tokens = tonumber(redis.call('HGET', KEYS[1], 'tokens') or '0')
local inflight = redis.call('ZCARD', KEYS[2])
redis.call('SET', KEYS[4], ARGV[7], 'NX')
local used = tonumber(redis.call('GET', KEYS[4]))
for _, held in ipairs(redis.call('HVALS', KEYS[3])) do used = used + tonumber(string.match(held, '^[^:]+')) end
local rpm, tpm, parallel, budget = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local want = tonumber(ARGV[6])
local outcome = 'admitted'
if rpm >= 0 and requests + 1 > rpm then outcome = 'requests'
elseif tpm >= 0 and tokens + want > tpm then outcome = 'tokens'
elseif parallel >= 0 and inflight >= parallel then outcome = 'parallel'
elseif budget >= 0 and used >= budget then outcome = 'quota' end
if outcome == 'admitted' then
  redis.call('HINCRBY', KEYS[1], 'requests', 1)
  redis.call('HINCRBY', KEYS[1], 'tokens', want)
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[11]))
  redis.call('ZADD', KEYS[2], tonumber(ARGV[9]), ARGV[8])
  redis.call('HSET', KEYS[3], ARGV[8], want .. ':' .. ARGV[10])
  requests, tokens = requests + 1, tokens + want
end
return {outcome, requests, tokens}
"""

# KEYS: in-flight zset, reserved hash, spend. ARGV: reservation id, tokens charged, window key prefix.
SETTLE = """
local held = redis.call('HGET', KEYS[2], ARGV[1])
if not held then return 0 end
local reserved, window = string.match(held, '^([^:]+):(.+)$')
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[1], ARGV[1])
local counted = ARGV[3] .. window
if redis.call('EXISTS', counted) == 1 then
  redis.call('HINCRBY', counted, 'tokens', tonumber(ARGV[2]) - tonumber(reserved))
end
if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('INCRBYFLOAT', KEYS[3], ARGV[2]) end
return 1
"""


def _limit(value: Any) -> int | float:
    return -1 if value is None else value


class ServerState:
    def __init__(self, redis_url: str, postgres_dsn: str, *, timeout_s: float = 2.0, fail_open: bool = False):
        import redis.asyncio as aioredis

        self._redis = aioredis.from_url(
            redis_url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry_on_timeout=False
        )
        self._dsn = postgres_dsn
        self._timeout_s = timeout_s
        self._fail_open = fail_open
        self._pg: Any = None  # a psycopg AsyncConnection, (re)made on demand
        self._connecting = asyncio.Lock()
        self._admit = self._redis.register_script(ADMIT)
        self._settle = self._redis.register_script(SETTLE)

    @classmethod
    def from_env(cls, config: GatewayConfig) -> ServerState:
        missing = [name for name in (config.redis_url_env, config.postgres_dsn_env) if not os.environ.get(name)]
        if missing:
            raise RuntimeError(f"gateway.state is `server` but {missing} are unset in the ingress replica")
        return cls(
            os.environ[config.redis_url_env],
            os.environ[config.postgres_dsn_env],
            timeout_s=config.timeout_s,
            fail_open=config.fail_open,
        )

    async def _sql(self, sql: str, args: tuple = (), *, rows: bool = True) -> list[dict[str, Any]]:
        """One statement in its own transaction; a broken connection is dropped and made again next call."""
        import psycopg
        from psycopg.rows import dict_row

        async with self._connecting:
            if self._pg is None or self._pg.closed:
                self._pg = await psycopg.AsyncConnection.connect(
                    self._dsn, autocommit=True, row_factory=dict_row, connect_timeout=max(1, int(self._timeout_s))
                )
                await self._pg.execute(SCHEMA)
            connection = self._pg
        try:
            cursor = await connection.execute(sql, args)
            return await cursor.fetchall() if rows and cursor.description else []
        except (psycopg.OperationalError, psycopg.InterfaceError):
            await connection.close()
            raise

    async def close(self) -> None:
        await self._redis.aclose()
        if self._pg is not None:
            await self._pg.close()

    async def _key(self, token: str) -> dict[str, Any] | None:
        found = await self._sql("SELECT * FROM gateway_keys WHERE token = %s", (token,))
        return found[0] if found else None

    async def admit(self, demand: Demand) -> Admission:
        key = await self._key(demand.token)
        if key is None:
            return decide(None, demand, None)
        # The key's own state first (blocked, expired, models, audio/image budgets), without its counters.
        unlimited = {**key, "rpm_limit": None, "tpm_limit": None, "max_parallel_requests": None, "max_budget": None}
        counters = Counters(0, 0, 0, 0.0, key["audio_seconds"], key["images"])
        admission = decide(unlimited, demand, counters)
        if not admission.admitted:
            return admission
        window = window_of(demand.now)
        prefix = f"gw:{demand.token}:"
        try:
            outcome, requests, tokens = await self._admit(
                keys=[f"{prefix}w:{window}", f"{prefix}inflight", f"{prefix}reserved", f"{prefix}spend"],
                args=[
                    demand.now,
                    _limit(key["rpm_limit"]),
                    _limit(key["tpm_limit"]),
                    _limit(key["max_parallel_requests"]),
                    _limit(key["max_budget"]),
                    demand.tokens,
                    key["spend"],
                    demand.reservation,
                    demand.now + demand.reservation_ttl_s,
                    window,
                    3 * 60,
                ],
            )
        except Exception:
            if not self._fail_open:
                raise
            return admission  # fail-open: a known, valid key, admitted without counting
        admission.outcome = cast(Outcome, outcome.decode() if isinstance(outcome, bytes) else outcome)
        rpm, tpm = key["rpm_limit"], key["tpm_limit"]
        admission.window = Window(
            limit_requests=rpm,
            remaining_requests=None if rpm is None else max(0, rpm - requests),
            limit_tokens=tpm,
            remaining_tokens=None if tpm is None else max(0, tpm - tokens),
            reset_s=reset_s(demand.now),
        )
        if not admission.admitted:
            admission.retry_after_s = {"quota": None, "parallel": 1.0}.get(admission.outcome, reset_s(demand.now))
        return admission

    async def settle(self, s: Settlement) -> None:
        values = usage_values(s)
        columns = ", ".join(("reservation", *USAGE_FIELDS))
        row = (s.reservation, *values[:-2], bool(s.cache_hit), values[-1])
        await self._sql(
            f"WITH logged AS (INSERT INTO gateway_usage ({columns}) VALUES ({', '.join(['%s'] * len(row))}) "
            "ON CONFLICT (reservation) DO NOTHING RETURNING token) "
            "UPDATE gateway_keys SET spend = spend + %s, audio_seconds = audio_seconds + %s, images = images + %s "
            "WHERE token IN (SELECT token FROM logged) RETURNING token",
            (*row, s.charged_tokens, 0.0 if s.cache_hit else s.audio_seconds, s.charged_images),
        )
        # A retry whose first try committed inserts no row, so charges nothing twice.
        if s.reservation is not None:
            prefix = f"gw:{s.token}:"
            try:
                await self._settle(
                    keys=[f"{prefix}inflight", f"{prefix}reserved", f"{prefix}spend"],
                    args=[s.reservation, s.charged_tokens, f"{prefix}w:"],
                )
            except Exception:
                if not self._fail_open:
                    raise

    async def settle_many(self, settlements: list[Settlement]) -> None:
        for settlement in settlements:
            await self.settle(settlement)

    async def create_key(self, token: str, name: str, fields: dict[str, Any], now: float) -> KeyInfo:
        import psycopg

        columns = ["token", "key_name", "created_at", *fields]
        values = [token, name, now, *(_encode(k, v) for k, v in fields.items())]
        try:
            await self._sql(
                f"INSERT INTO gateway_keys ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})",
                tuple(values),
                rows=False,
            )
        except psycopg.errors.UniqueViolation:
            raise KeyExists("a key with this value or key_alias exists") from None
        return key_info(found(await self._key(token)))

    async def update_key(self, token: str, fields: dict[str, Any]) -> KeyInfo | None:
        import psycopg

        unknown = set(fields) - set(KEY_FIELDS)
        if unknown:
            raise ValueError(f"not key fields: {sorted(unknown)}")
        if fields:
            try:
                await self._sql(
                    f"UPDATE gateway_keys SET {', '.join(f'{k} = %s' for k in fields)} WHERE token = %s",
                    (*(_encode(k, v) for k, v in fields.items()), token),
                    rows=False,
                )
            except psycopg.errors.UniqueViolation:
                raise KeyExists("another key has this key_alias") from None
        key = await self._key(token)
        return None if key is None else key_info(key)

    async def delete_keys(self, tokens: list[str], aliases: list[str]) -> list[str]:
        deleted = await self._sql(
            "DELETE FROM gateway_keys WHERE token = ANY(%s) OR key_alias = ANY(%s) RETURNING token", (tokens, aliases)
        )
        return [row["token"] for row in deleted]

    async def key_info(self, token: str) -> KeyInfo | None:
        key = await self._key(token)
        return None if key is None else key_info(key)

    async def list_keys(self) -> list[KeyInfo]:
        return [key_info(k) for k in await self._sql("SELECT * FROM gateway_keys ORDER BY created_at")]

    async def usage(self, token: str | None, start: float | None, end: float | None, limit: int) -> UsageResponse:
        where = ["created >= %s", "created <= %s"]
        args: list[float | str] = [start or 0.0, end if end is not None else float("inf")]
        if token is not None:
            where.append("token = %s")
            args.append(token)
        found = await self._sql(
            f"SELECT {', '.join(('id', *USAGE_FIELDS))} FROM gateway_usage WHERE {' AND '.join(where)} "
            "ORDER BY id LIMIT %s",
            (*args, limit + 1),
        )
        return usage_response(found, limit)


def _encode(name: str, value: Any) -> Any:
    from psycopg.types.json import Jsonb

    if name in ("models", "metadata"):
        return None if value is None else Jsonb(value)
    if name == "blocked":
        return bool(value)
    return value
