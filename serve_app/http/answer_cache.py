"""The response cache as the JSON routes use it: only ever for admitted requests of a gateway's keys.

Every gateway answer says what the cache did in `x-cache` (serve_app.http.metering): `hit` (served
from the cache, charged no tokens), `miss` (cacheable, computed, stored when it succeeded) or
`bypass` (not cacheable: a stream, a sampled request, a route or key that did not opt in,
`x-cache-control: no-cache`). Opt in per route (`gateway.cache.routes`), per key (`metadata.cache:
true`) or per request (`x-cache-control: cache`). The entries themselves (bounds, TTL, the key over
the model's version and the whole request) are serve_app.gateway.cache's.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from serve_app.gateway.cache import cache_key, deterministic
from serve_app.http.auth import app_path, current
from serve_app.http.metering import report_tokens
from serve_app.protocol import Usage

_JSON = b"application/json"


async def cached(request: Request, body: BaseModel, compute: Callable[[], Awaitable[BaseModel]]) -> Any:
    """`compute()`'s answer, from the cache when this request may be and is there; else computed (and stored,
    answered as a Response: its bytes are the cache's)."""
    key = await _key(request, body)
    if key is None:
        return await compute()
    caller = current()
    assert caller is not None  # _key found one
    cache = request.app.state.gateway.cache
    hit = cache.get(key)
    if hit is not None:
        caller.cache = "hit"
        content_type, content = hit
        _report_cached_usage(content)
        return Response(content=content, media_type=content_type.decode())
    caller.cache = "miss"
    answer = JSONResponse(jsonable(await compute()))
    cache.put(key, _JSON, bytes(answer.body))
    return answer


async def warm(gateway: Any, path: str, body: BaseModel, answer: BaseModel) -> bool:
    """Store `answer` as the cached answer to `body` on `path` (a batch's precompute, `metadata.cache: warm`):
    an online request identical to it, from a caller the cache serves, is then a hit. Only what the cache
    would store for an online request: a deterministic request, under the cache's own TTL and bounds."""
    fields = body.model_dump(mode="json", exclude_unset=True)
    if gateway is None or gateway.cache is None or not deterministic(path, fields):
        return False
    try:
        version = await gateway.model_version(fields["model"])
    except Exception:
        return False
    gateway.cache.put(cache_key(path, version, fields), _JSON, bytes(JSONResponse(jsonable(answer)).body))
    return True


def jsonable(answer: BaseModel) -> Any:
    """What FastAPI's response_model would send for `answer`, so a hit and a miss are the same bytes."""
    return answer.model_dump(mode="json")


async def _key(request: Request, body: BaseModel) -> str | None:
    caller = current()
    gateway = getattr(request.app.state, "gateway", None)
    if caller is None or gateway is None or gateway.cache is None:
        return None
    control = request.headers.get("x-cache-control", "").strip().lower()
    metadata = caller.admission.metadata if caller.admission else {}
    path = app_path(request.scope)
    fields = body.model_dump(mode="json", exclude_unset=True)
    opt_in = control == "cache" or metadata.get("cache") is True
    if control == "no-cache" or not gateway.cache.wanted(path, opt_in) or not deterministic(path, fields):
        return None
    try:
        version = await gateway.model_version(fields["model"])
    except Exception:
        return None  # an unknown model, or one that is down: the route answers that, uncached
    return cache_key(path, version, fields)


def _report_cached_usage(content: bytes) -> None:
    # Logged with the hit (which is charged nothing), as the answer says it used.
    usage = json.loads(content).get("usage") or {}
    report_tokens(Usage.of(usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)))
