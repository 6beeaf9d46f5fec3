"""Key admin in LiteLLM's routes, and the usage log (`/usage`).

The master key manages keys (`/key/generate`, `/key/update`, `/key/delete`, `/key/block`,
`/key/unblock`, `/key/list`) and sees everyone's usage; a key may read its own `/key/info`
and `/usage`. Without `gateway:` in the config these routes answer 404.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import Query

from serve_app.errors import InvalidRequest, NotFound, PermissionDenied
from serve_app.gateway import keys
from serve_app.gateway.service import Gateway
from serve_app.http.app import AUTHENTICATED
from serve_app.http.auth import Caller, current
from serve_app.http.routes.base import Backends
from serve_app.http.routing import get, post
from serve_app.protocol import (
    GeneratedKey,
    KeyDeleteRequest,
    KeyGenerateRequest,
    KeyInfo,
    KeyInfoResponse,
    KeyList,
    KeyRef,
    KeysDeleted,
    KeyUpdateRequest,
    UsageResponse,
)


def _fields(request: KeyGenerateRequest | KeyUpdateRequest, now: float) -> dict[str, Any]:
    fields = request.model_dump(exclude_unset=True, exclude={"key", "duration"})
    if "duration" in request.model_fields_set:
        fields["expires"] = None if request.duration is None else now + keys.duration_s(request.duration)
    return fields


class KeyRoutes(Backends):
    def _caller(self, *, admin: bool) -> tuple[Gateway, Caller]:
        caller = current()
        if self._gateway is None or caller is None:
            raise NotFound(
                "Key management needs the gateway: add a `gateway:` section to the config.", code="not_found"
            )
        if admin and not caller.master:
            raise PermissionDenied("Only the master key may manage keys.", code="admin_only")
        return self._gateway, caller

    @post("/key/generate", response_model=GeneratedKey, dependencies=AUTHENTICATED)
    async def key_generate(self, body: KeyGenerateRequest) -> GeneratedKey:
        gateway, _ = self._caller(admin=True)
        if body.key is not None and not keys.well_formed(body.key):
            raise InvalidRequest("A key of your own must be `sk-` and 8 to 200 of [A-Za-z0-9_-].", param="key")
        key = body.key or keys.new_key()
        now = time.time()
        info: KeyInfo = await gateway.state(
            "create_key", keys.hash_key(key), keys.key_name(key), _fields(body, now), now
        )
        return GeneratedKey(**info.model_dump(), key=key)

    @get("/key/info", response_model=KeyInfoResponse, dependencies=AUTHENTICATED)
    async def key_info(self, key: str | None = Query(default=None, max_length=256)) -> KeyInfoResponse:
        gateway, caller = self._caller(admin=False)
        if key is None and caller.master:
            raise InvalidRequest("Name the key: /key/info?key=sk-... (or its token).", param="key")
        token = caller.token if key is None else keys.token_of(key)
        if not caller.master and token != caller.token:
            raise PermissionDenied("A key may read only its own info.", code="admin_only")
        info = await gateway.state("key_info", token)
        if info is None:
            raise NotFound("No such key.", param="key", code="key_not_found")
        return KeyInfoResponse(key=key or info.key_name, info=info)

    @post("/key/update", response_model=KeyInfo, dependencies=AUTHENTICATED)
    async def key_update(self, body: KeyUpdateRequest) -> KeyInfo:
        gateway, _ = self._caller(admin=True)
        return await self._update(gateway, body.key, _fields(body, time.time()))

    @post("/key/block", response_model=KeyInfo, dependencies=AUTHENTICATED)
    async def key_block(self, body: KeyRef) -> KeyInfo:
        gateway, _ = self._caller(admin=True)
        return await self._update(gateway, body.key, {"blocked": True})

    @post("/key/unblock", response_model=KeyInfo, dependencies=AUTHENTICATED)
    async def key_unblock(self, body: KeyRef) -> KeyInfo:
        gateway, _ = self._caller(admin=True)
        return await self._update(gateway, body.key, {"blocked": False})

    async def _update(self, gateway: Gateway, key: str, fields: dict[str, Any]) -> KeyInfo:
        token = keys.token_of(key)
        info = await gateway.state("update_key", token, fields)
        gateway.forget(token)
        if info is None:
            raise NotFound("No such key.", param="key", code="key_not_found")
        return info

    @post("/key/delete", response_model=KeysDeleted, dependencies=AUTHENTICATED)
    async def key_delete(self, body: KeyDeleteRequest) -> KeysDeleted:
        gateway, _ = self._caller(admin=True)
        tokens = [keys.token_of(k) for k in body.keys]
        deleted = await gateway.state("delete_keys", tokens, body.key_aliases)
        gateway.forget(*deleted)
        return KeysDeleted(deleted_keys=deleted)

    @get("/key/list", response_model=KeyList, dependencies=AUTHENTICATED)
    async def key_list(self, return_full_object: bool = False, key_alias: str | None = None) -> KeyList:
        gateway, _ = self._caller(admin=True)
        found: list[KeyInfo] = await gateway.state("list_keys")
        if key_alias is not None:
            found = [k for k in found if k.key_alias == key_alias]
        keys: list[str | KeyInfo] = list(found) if return_full_object else [k.token for k in found]
        return KeyList(keys=keys, total_count=len(found))

    @get("/usage", response_model=UsageResponse, dependencies=AUTHENTICATED)
    async def usage(
        self,
        key: str | None = Query(default=None, max_length=256, description="A key or its token; admin only"),
        start: float | None = Query(default=None, description="Unix seconds, inclusive"),
        end: float | None = Query(default=None, description="Unix seconds, inclusive"),
        limit: int = Query(default=1000, ge=1, le=10000),
    ) -> UsageResponse:
        gateway, caller = self._caller(admin=False)
        token = None if key is None else keys.token_of(key)
        if not caller.master:
            if token is not None and token != caller.token:
                raise PermissionDenied("A key may read only its own usage.", code="admin_only")
            token = caller.token
        return await gateway.state("usage", token, start, end, limit)
