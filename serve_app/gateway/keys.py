"""API keys as LiteLLM makes them (`sk-` and random url-safe text), stored only as a sha256 hash.

A key that is not well formed is refused here, before any lookup: what reaches the state is
always a 64-hex-digit hash, so a key that looks like SQL, or a megabyte of header, is just an
unknown key (401), never a query or a 500.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import UTC, datetime

from serve_app.errors import InvalidRequest

PREFIX = "sk-"
# What a key may look like: LiteLLM's are `sk-` + url-safe base64; a custom key may be any such text.
_KEY = re.compile(r"sk-[A-Za-z0-9_\-]{8,200}")
_TOKEN = re.compile(r"[0-9a-f]{64}")
_DURATION = re.compile(r"(\d+)\s*(s|m|h|d|w|mo)")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "mo": 30 * 86400}


def new_key() -> str:
    return PREFIX + secrets.token_urlsafe(24)


def well_formed(key: str) -> bool:
    return _KEY.fullmatch(key) is not None


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def token_of(key_or_token: str) -> str:
    """The stored hash for what an admin names: the key itself, or its `token` as /key/info shows it."""
    if _TOKEN.fullmatch(key_or_token):
        return key_or_token
    if well_formed(key_or_token):
        return hash_key(key_or_token)
    raise InvalidRequest("`key` is neither a key (`sk-...`) nor a key's token (64 hex digits).", param="key")


def key_name(key: str) -> str:
    """The key abbreviated as LiteLLM shows it: enough to recognise, too little to use."""
    return f"{key[:3]}...{key[-4:]}"


def duration_s(text: str) -> float:
    """LiteLLM's durations: `30s`, `30m`, `30h`, `30d` (and `w`, `mo`); 400 on anything else."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise InvalidRequest(
            f"duration {text!r} is not a number and a unit (s, m, h, d, w, mo), e.g. `30d`.", param="duration"
        )
    return int(match[1]) * _UNIT_S[match[2]]


def iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")
