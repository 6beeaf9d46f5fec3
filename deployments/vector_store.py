"""The knowledge base: Qdrant collections of texts and images, embedded by the served embedding models.

Embedded Qdrant (a directory under the data dir) by default: only ONE process may open that
directory, so this deployment must run as a single replica. With `qdrant.url` (a Qdrant server)
any number of replicas can connect; `qdrant.url_env` names a variable that, when set here in the
replica, overrides the URL (compose and KubeRay point it at their own Qdrant service).

    store = serve.get_deployment_handle("VectorStore", app_name="default")
    await store.create_collection.remote({"name": "kb", "model": "tiny-clip"})
    await store.add_items.remote("kb", {"items": [{"text": "a red square", "metadata": {"shape": "square"}}]})
    await store.search.remote("kb", {"query": "a red square", "top_k": 3})
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from pathlib import Path
from typing import Any

from ray import serve
from ray.serve.handle import DeploymentHandle

from serve_app.common import metrics
from serve_app.config import QdrantConfig
from serve_app.errors import InvalidRequest, NotFound, parse_request
from serve_app.protocol import (
    CollectionCreate,
    CollectionInfo,
    CollectionList,
    Deleted,
    Detection,
    DetectionRequest,
    ImageInput,
    Item,
    ItemCreate,
    ItemList,
    ItemsCreate,
    SearchHit,
    SearchRequest,
    SearchResponse,
)

logger = logging.getLogger("ray.serve")

# Qdrant point ids must be UUIDs or integers; user ids are any string, mapped deterministically.
_ID_NAMESPACE = uuid.UUID("6f1c1d0e-8a61-4a53-9f0c-3c5f3f6f9a10")


def point_id(item_id: str) -> str:
    return str(uuid.uuid5(_ID_NAMESPACE, item_id))


def _item(payload: dict) -> Item:
    return Item.model_validate(payload)


def _metadata_filter(filter_: dict | None):
    from qdrant_client import models

    if not filter_:
        return None
    return models.Filter(
        must=[models.FieldCondition(key=f"metadata.{k}", match=models.MatchValue(value=v)) for k, v in filter_.items()]
    )


@serve.deployment(name="VectorStore")
class VectorStore:
    def __init__(
        self,
        config: QdrantConfig,
        data_dir: Path,
        embedders: dict[str, DeploymentHandle],
        detector: DeploymentHandle | None = None,
        detector_model: str | None = None,
    ):
        from qdrant_client import AsyncQdrantClient

        self._embedders = embedders
        self._detector = detector
        self._detector_model = detector_model
        url = config.server_url()
        if url:
            api_key = os.environ.get(config.api_key_env) if config.api_key_env else None
            self._client = AsyncQdrantClient(url=url, api_key=api_key, timeout=int(config.timeout_s))
            self._where = url
        else:
            path = config.path or str(Path(data_dir) / "qdrant")
            if path == ":memory:":
                self._client = AsyncQdrantClient(location=":memory:")
            else:
                Path(path).mkdir(parents=True, exist_ok=True)
                # Raises if another process holds the directory: a second replica fails loudly at start-up.
                self._client = AsyncQdrantClient(path=path)
            self._where = path
        self._cards: dict[str, Any] = {}
        logger.info("VectorStore on %s, embedding models %s", self._where, sorted(embedders))

    async def check_health(self) -> None:
        await self._client.get_collections()

    # -- collections ---------------------------------------------------------------------------------------

    @metrics.timed_store_operation("create_collection")
    async def create_collection(self, request: CollectionCreate | dict) -> CollectionInfo:
        from qdrant_client import models

        request = parse_request(CollectionCreate, request)
        card = await self._card(request.model)
        if await self._client.collection_exists(request.name):
            existing = await self.get_collection(request.name)
            if existing.model != request.model:
                raise InvalidRequest(
                    f"collection '{request.name}' already exists with model '{existing.model}'",
                    param="name",
                    code="collection_exists",
                )
            return existing
        # The vector is named after the model, so the collection itself records which model fills it.
        vectors = {request.model: models.VectorParams(size=card.embedding_dimension, distance=models.Distance.COSINE)}
        await self._client.create_collection(request.name, vectors_config=vectors)
        return await self.get_collection(request.name)

    @metrics.timed_store_operation("list_collections")
    async def list_collections(self) -> CollectionList:
        names = sorted(c.name for c in (await self._client.get_collections()).collections)
        return CollectionList(data=[await self.get_collection(name) for name in names])

    @metrics.timed_store_operation("get_collection")
    async def get_collection(self, name: str) -> CollectionInfo:
        await self._require(name)
        info = await self._client.get_collection(name)
        (model, params), *_ = info.config.params.vectors.items()
        count = (await self._client.count(name, exact=True)).count
        return CollectionInfo(
            name=name, model=model, dimension=params.size, distance=str(params.distance.value), items_count=count
        )

    @metrics.timed_store_operation("delete_collection")
    async def delete_collection(self, name: str) -> Deleted:
        await self._require(name)
        await self._client.delete_collection(name)
        return Deleted(id=name, object="collection")

    # -- items ---------------------------------------------------------------------------------------------

    @metrics.timed_store_operation("add_items")
    async def add_items(self, collection: str, request: ItemsCreate | dict) -> ItemList:
        from qdrant_client import models

        request = parse_request(ItemsCreate, request)
        info = await self.get_collection(collection)
        vectors = await self._item_vectors(info, request.items)
        detections = await self._item_detections(request.items)
        now = int(time.time())
        items, points = [], []
        for item, vector, found in zip(request.items, vectors, detections, strict=True):
            kind = "text" if item.text is not None else "image" if item.image is not None else "vector"
            stored = Item(
                id=item.id or str(uuid.uuid4()),
                kind=kind,
                text=item.text,
                metadata=item.metadata,
                detections=found,
                created=now,
            )
            items.append(stored)
            points.append(
                models.PointStruct(id=point_id(stored.id), vector={info.model: vector}, payload=stored.model_dump())
            )
        await self._client.upsert(collection, points=points, wait=True)
        return ItemList(data=items)

    @metrics.timed_store_operation("list_items")
    async def list_items(self, collection: str, limit: int = 100, offset: str | None = None) -> ItemList:
        await self._require(collection)
        if not 1 <= limit <= 1000:
            raise InvalidRequest("limit must be between 1 and 1000", param="limit")
        points, next_offset = await self._client.scroll(
            collection, limit=limit, offset=offset, with_payload=True, with_vectors=False
        )
        return ItemList(
            data=[_item(p.payload) for p in points], next_offset=str(next_offset) if next_offset is not None else None
        )

    @metrics.timed_store_operation("get_item")
    async def get_item(self, collection: str, item_id: str) -> Item:
        await self._require(collection)
        found = await self._client.retrieve(collection, ids=[point_id(item_id)], with_payload=True)
        if not found:
            raise NotFound(f"no item '{item_id}' in collection '{collection}'", param="id", code="item_not_found")
        return _item(found[0].payload)

    @metrics.timed_store_operation("delete_item")
    async def delete_item(self, collection: str, item_id: str) -> Deleted:
        from qdrant_client import models

        await self.get_item(collection, item_id)
        await self._client.delete(
            collection, points_selector=models.PointIdsList(points=[point_id(item_id)]), wait=True
        )
        return Deleted(id=item_id, object="collection.item")

    # -- search --------------------------------------------------------------------------------------------

    @metrics.timed_store_operation("search")
    async def search(self, collection: str, request: SearchRequest | dict) -> SearchResponse:
        request = parse_request(SearchRequest, request)
        info = await self.get_collection(collection)
        if request.vector is not None:
            vector = self._checked_vector(info, request.vector, "vector")
        else:
            query = request.query if request.query is not None else ImageInput(image=request.image)
            vector = (await self._embed(info, [query], "image" if request.image is not None else "query"))[0]
        hits = await self.search_vectors(collection, [vector], request.top_k, model=info.model, filter=request.filter)
        return SearchResponse(collection=collection, data=hits[0])

    @metrics.timed_store_operation("search_vectors")
    async def search_vectors(
        self,
        collection: str,
        vectors: list[list[float]],
        top_k: int,
        *,
        model: str,
        filter: dict | None = None,
    ) -> list[list[SearchHit]]:
        """Top-k hits per vector; `model` must be the collection's (pipelines embed themselves)."""
        from qdrant_client import models

        info = await self.get_collection(collection)
        if info.model != model:
            raise InvalidRequest(
                f"collection '{collection}' holds '{info.model}' vectors; these come from '{model}'",
                param="collection",
            )
        vectors = [self._checked_vector(info, v, "vector") for v in vectors]
        requests = [
            models.QueryRequest(query=v, using=model, limit=top_k, filter=_metadata_filter(filter), with_payload=True)
            for v in vectors
        ]
        responses = await self._client.query_batch_points(collection, requests=requests)
        return [[SearchHit(item=_item(p.payload), score=p.score) for p in r.points] for r in responses]

    # -- helpers -------------------------------------------------------------------------------------------

    async def _require(self, name: str) -> None:
        if not await self._client.collection_exists(name):
            raise NotFound(f"collection '{name}' does not exist", param="collection", code="collection_not_found")

    async def _card(self, model: str):
        if model not in self._embedders:
            raise NotFound(
                f"The model '{model}' does not exist; embedding models served here: {sorted(self._embedders)}",
                param="model",
            )
        if model not in self._cards:
            self._cards[model] = await self._embedders[model].card.remote()
        return self._cards[model]

    def _checked_vector(self, info: CollectionInfo, vector: list[float], param: str) -> list[float]:
        if len(vector) != info.dimension:
            raise InvalidRequest(
                f"vector has {len(vector)} dimensions; collection '{info.name}' ({info.model}) needs {info.dimension}",
                param=param,
            )
        return [float(x) for x in vector]

    async def _embed(self, info: CollectionInfo, inputs: list, param: str) -> list[list[float]]:
        card = await self._card(info.model)
        if any(not isinstance(x, str) for x in inputs) and "image" not in (card.input_modalities or []):
            raise InvalidRequest(
                f"collection '{info.name}' uses '{info.model}', which embeds text only; use a CLIP model for images",
                param=param,
            )
        results = await self._embedders[info.model].embed_inputs.remote(inputs)
        return [vector.tolist() for vector, _ in results]

    async def _item_vectors(self, info: CollectionInfo, items: list[ItemCreate]) -> list[list[float]]:
        vectors: list[list[float] | None] = [None] * len(items)
        to_embed = []
        for i, item in enumerate(items):
            if item.vector is not None:
                vectors[i] = self._checked_vector(info, item.vector, f"items.{i}.vector")
            else:
                to_embed.append((i, item.text if item.text is not None else ImageInput(image=item.image)))
        if to_embed:
            embedded = await self._embed(info, [x for _, x in to_embed], "items")
            for (i, _), vector in zip(to_embed, embedded, strict=True):
                vectors[i] = vector
        return vectors

    async def _item_detections(self, items: list[ItemCreate]) -> list[list[Detection] | None]:
        wanted = [i for i, item in enumerate(items) if item.detect and item.image is not None]
        if wanted and self._detector is None:
            raise InvalidRequest("`detect` needs a detector, and none is configured", param="items")
        replies = await asyncio.gather(
            *(
                self._detector.detect.remote(DetectionRequest(model=self._detector_model, image=items[i].image))
                for i in wanted
            )
        )
        found: list[list[Detection] | None] = [None] * len(items)
        for i, reply in zip(wanted, replies, strict=True):
            found[i] = reply.detections
        return found
