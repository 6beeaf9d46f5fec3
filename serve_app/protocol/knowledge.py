"""Knowledge-base contracts (an extension): collections, their items, and vector search over Qdrant.

A collection is bound to one embedding model when it is created, so its items and the
queries against it are always embedded into the same space: callers name a collection and a
model, and the vector size and distance follow from the model. Validation rejects ambiguous
input (an item that is both text and image, a search with two queries) instead of guessing.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from serve_app.protocol.common import ImageData, _Request, schema_rules
from serve_app.protocol.vision import Detection

# "This field is given and not null", as the items' and searches' schema rules name their content.
_GIVEN = {
    name: {"required": [name], "properties": {name: {"not": {"type": "null"}}}}
    for name in ("text", "image", "vector", "query")
}
CollectionName = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="Letters, digits, '_' and '-'; 1-64 chars.")


class CollectionCreate(_Request):
    """extension: a knowledge-base collection; its vector size and distance come from `model`."""

    name: str = CollectionName
    model: str = Field(min_length=1, description="Embedding model (served name) for its items and queries.")


class CollectionInfo(BaseModel):
    object: Literal["collection"] = "collection"
    name: str
    model: str
    dimension: int
    distance: str
    items_count: int


class CollectionList(BaseModel):
    object: Literal["list"] = "list"
    data: list[CollectionInfo]


class ItemCreate(_Request):
    """A text or an image (embedded by the collection's model), or a precomputed vector."""

    model_config = ConfigDict(
        json_schema_extra=schema_rules(
            {"anyOf": [_GIVEN["text"], _GIVEN["image"], _GIVEN["vector"]]},
            {"not": {"allOf": [_GIVEN["text"], _GIVEN["image"]]}},
        )
    )

    id: str | None = Field(default=None, min_length=1, max_length=256, description="Default: a new UUID.")
    text: str | None = None
    image: ImageData | None = Field(default=None, description="Needs a collection whose model embeds images.")
    vector: list[float] | None = Field(default=None, description="Stored as is; must have the collection's dimension.")
    metadata: dict = Field(default_factory=dict)
    detect: bool = Field(default=False, description="Store the image's detections in the payload.")

    @model_validator(mode="after")
    def _has_content(self) -> ItemCreate:
        if self.text is None and self.image is None and self.vector is None:
            raise ValueError("an item needs `text`, `image` or `vector`")
        if self.text is not None and self.image is not None:
            raise ValueError("an item is either `text` or `image`, not both")
        return self


class ItemsCreate(_Request):
    items: list[ItemCreate] = Field(min_length=1, max_length=1024)


class Item(BaseModel):
    object: Literal["collection.item"] = "collection.item"
    id: str
    kind: Literal["text", "image", "vector"]
    text: str | None = None
    metadata: dict = Field(default_factory=dict)
    detections: list[Detection] | None = None
    created: int


class ItemList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Item]
    next_offset: str | None = Field(default=None, description="Pass as `offset` for the next page.")


class SearchRequest(_Request):
    model_config = ConfigDict(
        json_schema_extra=schema_rules({"oneOf": [_GIVEN["query"], _GIVEN["image"], _GIVEN["vector"]]})
    )

    query: str | None = Field(default=None, description="Text to search by.")
    image: ImageData | None = Field(default=None, description="Or an image (collection model must embed images).")
    vector: list[float] | None = Field(default=None, description="Or a vector of the collection's dimension.")
    top_k: int = Field(default=5, ge=1, le=100)
    filter: dict[str, str | int | float | bool] | None = Field(
        default=None, description="Metadata fields that must equal these values."
    )

    @model_validator(mode="after")
    def _one_query(self) -> SearchRequest:
        given = [n for n in ("query", "image", "vector") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of `query`, `image` or `vector`")
        return self


class SearchHit(BaseModel):
    object: Literal["search.hit"] = "search.hit"
    item: Item
    score: float


class SearchResponse(BaseModel):
    object: Literal["list"] = "list"
    collection: str
    data: list[SearchHit]
