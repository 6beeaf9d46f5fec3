"""The knowledge base (Qdrant collections of texts and images) over HTTP."""

from __future__ import annotations

from typing import Any

from fastapi import Query

from serve_app.http.app import AUTHENTICATED, JSON_API
from serve_app.http.routes.base import Backends
from serve_app.http.routing import delete, get, post
from serve_app.protocol import (
    CollectionCreate,
    CollectionInfo,
    CollectionList,
    Deleted,
    Item,
    ItemList,
    ItemsCreate,
    SearchRequest,
    SearchResponse,
)


class KnowledgeRoutes(Backends):
    @post("/v1/collections", response_model=CollectionInfo, dependencies=JSON_API)
    async def create_collection(self, body: CollectionCreate) -> Any:
        return await self._service("vector_store").create_collection.remote(body)

    @get("/v1/collections", response_model=CollectionList, dependencies=AUTHENTICATED)
    async def list_collections(self) -> Any:
        return await self._service("vector_store").list_collections.remote()

    @get("/v1/collections/{name}", response_model=CollectionInfo, dependencies=AUTHENTICATED)
    async def get_collection(self, name: str) -> Any:
        return await self._service("vector_store").get_collection.remote(name)

    @delete("/v1/collections/{name}", response_model=Deleted, dependencies=AUTHENTICATED)
    async def delete_collection(self, name: str) -> Any:
        return await self._service("vector_store").delete_collection.remote(name)

    @post("/v1/collections/{name}/items", response_model=ItemList, dependencies=JSON_API)
    async def add_items(self, name: str, body: ItemsCreate) -> Any:
        return await self._service("vector_store").add_items.remote(name, body)

    @get("/v1/collections/{name}/items", response_model=ItemList, dependencies=AUTHENTICATED)
    async def list_items(self, name: str, limit: int = Query(100, ge=1, le=1000), offset: str | None = None) -> Any:
        return await self._service("vector_store").list_items.remote(name, limit, offset)

    @get("/v1/collections/{name}/items/{item_id}", response_model=Item, dependencies=AUTHENTICATED)
    async def get_item(self, name: str, item_id: str) -> Any:
        return await self._service("vector_store").get_item.remote(name, item_id)

    @delete("/v1/collections/{name}/items/{item_id}", response_model=Deleted, dependencies=AUTHENTICATED)
    async def delete_item(self, name: str, item_id: str) -> Any:
        return await self._service("vector_store").delete_item.remote(name, item_id)

    @post("/v1/collections/{name}/search", response_model=SearchResponse, dependencies=JSON_API)
    async def search_collection(self, name: str, body: SearchRequest) -> Any:
        return await self._service("vector_store").search.remote(name, body)
