"""The exact-match response cache: deterministic answers, served again byte for byte.

The cache key is the route, the model's version (a new version of the weights is a new answer)
and the whole request body in canonical JSON, so every sampling field, the prompt and the
`user` count; two requests share an entry only when they are the same request. Entries live in
each ingress replica's memory, bounded by count and by entry size, and expire after `ttl_s`.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from typing import Any

from serve_app.config import CacheConfig

# The routes a cache may answer, by path, and whether a request there must ask for temperature 0.
CACHEABLE = {
    "/v1/chat/completions": ("chat", True),
    "/v1/completions": ("completions", True),
    "/v1/embeddings": ("embeddings", False),
}


def cache_key(path: str, model_version: str, body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{path}\n{model_version}\n{canonical}".encode()).hexdigest()


def deterministic(path: str, body: dict[str, Any]) -> bool:
    """Only requests whose answer cannot change between two calls; streams never (replay is not a stream)."""
    route = CACHEABLE.get(path)
    if route is None or body.get("stream"):
        return False
    _, needs_greedy = route
    if needs_greedy:
        temperature = body.get("temperature", 1.0)
        return isinstance(temperature, int | float) and temperature == 0 and body.get("n", 1) == 1
    return True


class ResponseCache:
    def __init__(self, config: CacheConfig):
        self.config = config
        self._entries: OrderedDict[str, tuple[float, bytes, bytes]] = OrderedDict()

    def wanted(self, path: str, opt_in: bool) -> bool:
        """Cached for this request: its route is cached for everyone, or the request or its key asked."""
        route = CACHEABLE.get(path)
        return route is not None and (opt_in or route[0] in self.config.routes)

    def get(self, key: str) -> tuple[bytes, bytes] | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, content_type, body = entry
        if expires <= time.monotonic():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return content_type, body

    def put(self, key: str, content_type: bytes, body: bytes) -> None:
        if len(body) > self.config.max_entry_bytes:
            return
        self._entries[key] = (time.monotonic() + self.config.ttl_s, content_type, body)
        self._entries.move_to_end(key)
        while len(self._entries) > self.config.max_entries:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
