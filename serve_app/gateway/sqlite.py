"""The embedded gateway state: one SQLite file under the data dir, opened by ONE process.

The GatewayState deployment (deployments/gateway_state.py) owns it, as VectorStore owns the
embedded Qdrant directory. Its methods run on that replica's event loop and never await between
reading counters and writing the reservation, so admissions from any number of ingress replicas
are serialised: limits hold exactly. WAL mode with synchronous=NORMAL: a commit survives the
process dying (what a replica restart is), at a fraction of a millisecond each.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from serve_app.gateway.keys import iso
from serve_app.gateway.state import (
    Admission,
    Claim,
    Counters,
    Demand,
    Grant,
    KeyExists,
    Settlement,
    decide,
    lease_size,
    window_of,
    window_reset_s,
)
from serve_app.protocol import KeyInfo, UsageEntry, UsageResponse, UsageTotals

# Stored key fields (besides token, key_name, created_at and the spend counters); JSON ones are marked.
KEY_FIELDS = (
    "key_alias",
    "models",
    "rpm_limit",
    "tpm_limit",
    "max_parallel_requests",
    "max_budget",
    "max_audio_seconds",
    "max_images",
    "expires",
    "metadata",
    "user_id",
    "blocked",
)
JSON_FIELDS = frozenset({"models", "metadata"})
USAGE_FIELDS = (
    "created",
    "token",
    "key_alias",
    "route",
    "model",
    "variant",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "audio_seconds",
    "images",
    "status",
    "latency_ms",
    "cache_hit",
    "request_id",
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    token TEXT PRIMARY KEY, key_name TEXT NOT NULL, key_alias TEXT UNIQUE, models TEXT, rpm_limit INTEGER,
    tpm_limit INTEGER, max_parallel_requests INTEGER, max_budget REAL, max_audio_seconds REAL, max_images INTEGER,
    expires REAL, metadata TEXT, user_id TEXT, blocked INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL,
    spend REAL NOT NULL DEFAULT 0, audio_seconds REAL NOT NULL DEFAULT 0, images INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS windows (
    token TEXT NOT NULL, window INTEGER NOT NULL, requests INTEGER NOT NULL, tokens INTEGER NOT NULL,
    PRIMARY KEY (token, window)
);
CREATE TABLE IF NOT EXISTS reservations (
    id TEXT PRIMARY KEY, token TEXT NOT NULL, window INTEGER NOT NULL, tokens INTEGER NOT NULL, expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS reservations_by_token ON reservations (token, expires_at);
CREATE TABLE IF NOT EXISTS leases (
    id TEXT PRIMARY KEY, token TEXT NOT NULL, window INTEGER NOT NULL, requests INTEGER NOT NULL, tokens INTEGER,
    claimed INTEGER NOT NULL DEFAULT 0, expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS leases_by_token ON leases (token, window);
CREATE TABLE IF NOT EXISTS usage (
    id INTEGER PRIMARY KEY AUTOINCREMENT, created REAL NOT NULL, token TEXT NOT NULL, key_alias TEXT,
    route TEXT NOT NULL, model TEXT, variant TEXT, prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,
    total_tokens INTEGER NOT NULL, audio_seconds REAL NOT NULL, images INTEGER NOT NULL, status INTEGER NOT NULL,
    latency_ms REAL NOT NULL, cache_hit INTEGER NOT NULL, request_id TEXT
);
CREATE INDEX IF NOT EXISTS usage_by_token ON usage (token, created);
CREATE INDEX IF NOT EXISTS usage_by_time ON usage (created);
"""


def encode(name: str, value: Any) -> Any:
    if name in JSON_FIELDS:
        return None if value is None else json.dumps(value)
    if name == "blocked":
        return int(bool(value))
    return value


def decode_key(row: dict[str, Any]) -> dict[str, Any]:
    key = dict(row)
    for name in JSON_FIELDS:
        key[name] = json.loads(key[name]) if key.get(name) else None
    key["blocked"] = bool(key.get("blocked"))
    return key


def found(key: dict[str, Any] | None) -> dict[str, Any]:
    """A key row just written: only a concurrent delete could take it away, and then there is nothing to show."""
    if key is None:
        raise KeyError("the key was deleted while it was being written")
    return key


def key_info(key: dict[str, Any]) -> KeyInfo:
    return KeyInfo(
        **{name: key.get(name) for name in KEY_FIELDS if name not in ("expires", "models", "metadata", "blocked")},
        token=key["token"],
        key_name=key["key_name"],
        models=key.get("models") or [],
        metadata=key.get("metadata") or {},
        blocked=bool(key.get("blocked")),
        expires=iso(key.get("expires")),
        created_at=iso(key["created_at"]),
        spend=key.get("spend") or 0.0,
        audio_seconds=key.get("audio_seconds") or 0.0,
        images=key.get("images") or 0,
    )


def usage_response(rows: list[dict[str, Any]], limit: int) -> UsageResponse:
    entries = [UsageEntry(**{**row, "cache_hit": bool(row["cache_hit"])}) for row in rows[:limit]]
    totals = UsageTotals(
        requests=len(entries),
        prompt_tokens=sum(e.prompt_tokens for e in entries),
        completion_tokens=sum(e.completion_tokens for e in entries),
        total_tokens=sum(e.total_tokens for e in entries),
        audio_seconds=sum(e.audio_seconds for e in entries),
        images=sum(e.images for e in entries),
        cache_hits=sum(e.cache_hit for e in entries),
    )
    return UsageResponse(data=entries, totals=totals, has_more=len(rows) > limit)


def usage_values(s: Settlement) -> tuple:
    row = {**s.__dict__, "created": s.ended_at, "total_tokens": s.total_tokens, "cache_hit": int(s.cache_hit)}
    return tuple(row[name] for name in USAGE_FIELDS)


class SQLiteState:
    """GatewayState over one SQLite file; every method is one transaction."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    def ping(self) -> None:
        self._db.execute("SELECT 1").fetchone()

    def close(self) -> None:
        self._db.close()

    def _one(self, sql: str, args: tuple = ()) -> dict[str, Any] | None:
        row = self._db.execute(sql, args).fetchone()
        return None if row is None else dict(row)

    def _key(self, token: str) -> dict[str, Any] | None:
        row = self._one("SELECT * FROM keys WHERE token = ?", (token,))
        return None if row is None else decode_key(row)

    async def admit(self, demand: Demand, claims: Sequence[Claim] = (), returned: Sequence[str] = ()) -> Admission:
        """Admit one request (and lease a slice when it asks); an ingress's claims and returns count first."""
        if claims or returned:
            self._reconcile(claims, returned)
        key = self._key(demand.token)
        if key is None:
            return decide(None, demand, None)
        window = window_of(demand.now)
        counted = self._one(
            "SELECT requests, tokens FROM windows WHERE token = ? AND window = ?", (demand.token, window)
        )
        live = self._one(
            "SELECT COUNT(*) AS n, COALESCE(SUM(tokens), 0) AS reserved FROM reservations "
            "WHERE token = ? AND expires_at > ?",
            (demand.token, demand.now),
        )
        assert live is not None  # an aggregate always has its one row
        counters = Counters(
            requests=counted["requests"] if counted else 0,
            tokens=counted["tokens"] if counted else 0,
            inflight=live["n"],
            budget_used=key["spend"] + live["reserved"],
            audio_seconds=key["audio_seconds"],
            images=key["images"],
        )
        admission = decide(key, demand, counters)
        if not admission.admitted:
            if admission.outcome in ("requests", "tokens"):
                admission.leased_until = self._leased_until(demand.token, window, demand.now)
            return admission
        size = lease_size(key, demand, counters) if demand.lease else None
        requests, tokens = size or (0, 0)
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "INSERT INTO windows VALUES (?, ?, ?, ?) ON CONFLICT (token, window) "
                "DO UPDATE SET requests = requests + excluded.requests, tokens = tokens + excluded.tokens",
                (demand.token, window, 1 + requests, demand.tokens + (tokens or 0)),
            )
            self._db.execute(
                "INSERT INTO reservations VALUES (?, ?, ?, ?, ?)",
                (demand.reservation, demand.token, window, demand.tokens, demand.now + demand.reservation_ttl_s),
            )
            if size is not None and demand.lease is not None:
                # A lease ends with its minute, and before the key does.
                ends = min(demand.now + demand.lease_ttl_s, demand.now + window_reset_s(demand.now))
                if key.get("expires") is not None:
                    ends = min(ends, key["expires"])
                self._db.execute(
                    "INSERT INTO leases VALUES (?, ?, ?, ?, ?, 0, ?)",
                    (demand.lease, demand.token, window, requests, tokens, ends),
                )
                admission.lease = Grant(demand.lease, requests, tokens, ends)
        return admission

    def _leased_until(self, token: str, window: int, now: float) -> float | None:
        row = self._one(
            "SELECT MAX(expires_at) AS until FROM leases WHERE token = ? AND window = ? AND expires_at > ? "
            "AND requests > 0",
            (token, window, now),
        )
        assert row is not None  # an aggregate always has its one row (NULL: no lease out)
        return row["until"]

    def _reconcile(self, claims: Sequence[Claim], returned: Sequence[str]) -> None:
        """What an ingress spent from its leases becomes reservations; what it gives back leaves the window.

        Idempotent (an ingress resends what it has not seen acknowledged): a claim counts once, by its
        sequence number in its lease, and not at all once the lease is back (the return carried it).
        """
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            for claim in claims:
                lease = self._one("SELECT window, tokens, claimed FROM leases WHERE id = ?", (claim.lease,))
                if lease is None or claim.seq <= lease["claimed"]:
                    continue
                if lease["tokens"] is None:  # no token limit, so none leased: the window learns the claim's now
                    self._db.execute(
                        "UPDATE windows SET tokens = tokens + ? WHERE token = ? AND window = ?",
                        (claim.tokens, claim.token, lease["window"]),
                    )
                self._db.execute(
                    "INSERT OR IGNORE INTO reservations VALUES (?, ?, ?, ?, ?)",
                    (claim.reservation, claim.token, lease["window"], claim.tokens, claim.expires_at),
                )
                self._db.execute(
                    "UPDATE leases SET requests = requests - 1, tokens = tokens - ?, claimed = ? WHERE id = ?",
                    (claim.tokens, claim.seq, claim.lease),
                )
            for lease_id in returned:
                lease = self._one("SELECT * FROM leases WHERE id = ?", (lease_id,))
                if lease is None:
                    continue
                self._db.execute(
                    "UPDATE windows SET requests = MAX(0, requests - ?), tokens = MAX(0, tokens - ?) "
                    "WHERE token = ? AND window = ?",
                    (max(lease["requests"], 0), max(lease["tokens"] or 0, 0), lease["token"], lease["window"]),
                )
                self._db.execute("DELETE FROM leases WHERE id = ?", (lease_id,))

    async def reconcile(
        self, claims: Sequence[Claim], settlements: Sequence[Settlement], returned: Sequence[str]
    ) -> None:
        """One ingress's flush: its claims, then its settlements, then the leases it gives back."""
        self._reconcile(claims, ())
        await self.settle_many(list(settlements))
        self._reconcile((), returned)

    async def settle(self, s: Settlement) -> None:
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            if s.reservation is not None:
                held = self._one("SELECT * FROM reservations WHERE id = ?", (s.reservation,))
                if held is None:
                    return  # settled before (a retry whose first try committed): nothing twice
                self._db.execute("DELETE FROM reservations WHERE id = ?", (s.reservation,))
                self._db.execute(
                    "UPDATE windows SET tokens = MAX(0, tokens + ?) WHERE token = ? AND window = ?",
                    (s.charged_tokens - held["tokens"], held["token"], held["window"]),
                )
            self._db.execute(
                "UPDATE keys SET spend = spend + ?, audio_seconds = audio_seconds + ?, images = images + ? "
                "WHERE token = ?",
                (s.charged_tokens, 0.0 if s.cache_hit else s.audio_seconds, s.charged_images, s.token),
            )
            placeholders = ", ".join("?" for _ in USAGE_FIELDS)
            self._db.execute(f"INSERT INTO usage ({', '.join(USAGE_FIELDS)}) VALUES ({placeholders})", usage_values(s))
            # Old windows and long-dead reservations are of no use to any limit.
            self._db.execute("DELETE FROM windows WHERE window < ?", (window_of(s.ended_at) - 1,))
            self._db.execute("DELETE FROM leases WHERE window < ?", (window_of(s.ended_at) - 1,))

    async def settle_many(self, settlements: list[Settlement]) -> None:
        for settlement in settlements:
            await self.settle(settlement)

    async def create_key(self, token: str, name: str, fields: dict[str, Any], now: float) -> KeyInfo:
        columns = ["token", "key_name", "created_at", *fields]
        values = [token, name, now, *(encode(k, v) for k, v in fields.items())]
        try:
            with self._db:
                self._db.execute(
                    f"INSERT INTO keys ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})", values
                )
        except sqlite3.IntegrityError:
            raise KeyExists("a key with this value or key_alias exists") from None
        return key_info(found(self._key(token)))

    async def update_key(self, token: str, fields: dict[str, Any]) -> KeyInfo | None:
        if self._key(token) is None:
            return None
        if fields:
            assignments = ", ".join(f"{name} = ?" for name in fields)
            try:
                with self._db:
                    self._db.execute(
                        f"UPDATE keys SET {assignments} WHERE token = ?",
                        (*(encode(k, v) for k, v in fields.items()), token),
                    )
            except sqlite3.IntegrityError:
                raise KeyExists("another key has this key_alias") from None
        return key_info(found(self._key(token)))

    async def delete_keys(self, tokens: list[str], aliases: list[str]) -> list[str]:
        found = [
            row[0]
            for row in self._db.execute(
                f"SELECT token FROM keys WHERE token IN ({', '.join('?' * len(tokens)) or 'NULL'}) "
                f"OR key_alias IN ({', '.join('?' * len(aliases)) or 'NULL'})",
                (*tokens, *aliases),
            )
        ]
        with self._db:
            self._db.executemany("DELETE FROM keys WHERE token = ?", [(t,) for t in found])
        return found

    async def key_info(self, token: str) -> KeyInfo | None:
        key = self._key(token)
        return None if key is None else key_info(key)

    async def list_keys(self) -> list[KeyInfo]:
        rows = self._db.execute("SELECT * FROM keys ORDER BY created_at").fetchall()
        return [key_info(decode_key(dict(row))) for row in rows]

    async def usage(self, token: str | None, start: float | None, end: float | None, limit: int) -> UsageResponse:
        where = ["created >= ?", "created <= ?"]
        args: list[float | str] = [start or 0.0, end if end is not None else float("inf")]
        if token is not None:
            where.append("token = ?")
            args.append(token)
        rows = self._db.execute(
            f"SELECT * FROM usage WHERE {' AND '.join(where)} ORDER BY id LIMIT ?", (*args, limit + 1)
        ).fetchall()
        return usage_response([dict(r) for r in rows], limit)
