"""Media batch lines: transcriptions, translations, video summaries, detections, image RAG and indexing.

A media line's body is its online route's form (or JSON) fields, with the media named by id,
`"file": "file-..."`: an upload with purpose `user_data` that belongs to the batch's owner. The
Ingress finds it in `batch.files_dir` and hands audio and video to the ASR as a path (every node
reads the same directory, and a 2 GB video never crosses a handle), images as their bytes. Each
line's answer is what its online route answers: JSON as a dict, SRT, VTT and text as a string. A
missing, foreign or wrong-purpose file, a file that is not media, or bad fields fail that line alone
(an APIError, which the runner writes to the batch's error file).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from serve_app.errors import InvalidRequest, NotFound, as_api_error, parse_request
from serve_app.http.routes.base import Backends
from serve_app.http.routes.speech import render_transcription, transcription_options
from serve_app.protocol import (
    COLLECTION_ITEMS,
    DetectionRequest,
    ImageRAGRequest,
    ItemCreate,
    ItemList,
    ItemsCreate,
    TranscriptionFormat,
    VideoSummaryOptions,
)
from serve_app.protocol.common import _Request

Granularity = Literal["word", "segment"]
LineAnswer = tuple[int, dict[str, Any]]  # (status code, body): what a line's output or error line holds


class TranscriptionLine(_Request):
    """The form fields of /v1/audio/transcriptions and /translations, as a batch line's body."""

    model: str = Field(min_length=1)
    language: str | None = None
    prompt: str | None = None
    temperature: float = Field(default=0.0, ge=0.0, le=1.0)
    response_format: TranscriptionFormat = "json"
    timestamp_granularities: list[Granularity] | None = None
    diarize: bool = False


class BatchMedia(Backends):
    async def media_line(self, endpoint: str, body: dict[str, Any], owner: str | None) -> dict[str, Any] | str:
        """One media line, answered as its online route would, or its APIError."""
        fields = {k: v for k, v in body.items() if k != "file"}
        if endpoint in ("/v1/audio/transcriptions", "/v1/audio/translations"):
            path = await self._line_file(body.get("file"), owner)
            return await self._transcription_line(endpoint, str(path), fields)
        if endpoint == "/v1/pipelines/video-summary":
            path = await self._line_file(body.get("file"), owner)
            options = parse_request(VideoSummaryOptions, fields)
            return (await self.summarize_video(str(path), options)).model_dump(mode="json")  # type: ignore[attr-defined]
        if endpoint == "/v1/detections":
            image = await self._line_bytes(body.get("file"), owner)
            request = parse_request(DetectionRequest, {**fields, "image": image})
            return (await self.detect(request)).model_dump(mode="json")  # type: ignore[attr-defined]
        if endpoint == "/v1/pipelines/image-rag":
            image = await self._line_bytes(body.get("file"), owner)
            rag = parse_request(ImageRAGRequest, {**fields, "image": image})
            return (await self.image_rag_run(rag)).model_dump(mode="json")  # type: ignore[attr-defined]
        collection = _collection(endpoint)
        item = await self._index_item(body, owner)
        return (await self._add_items(collection, [item]))[0]

    async def media_items(self, endpoint: str, bodies: list[dict[str, Any]], owner: str | None) -> list[LineAnswer]:
        """A block of indexing lines for one collection, each line's (status, body): the items that
        parse go to the vector store in one call (one embedding batch, one upsert); a call refused as
        a whole (a corrupt image among them) is made again line by line, so only the bad line fails.
        A refused call stores nothing: the store upserts after every vector and detection is made."""
        collection = _collection(endpoint)
        parsed = await asyncio.gather(*(self._index_item(body, owner) for body in bodies), return_exceptions=True)
        answers: list[LineAnswer | None] = [refused(p) if isinstance(p, BaseException) else None for p in parsed]
        ready = [(i, item) for i, item in enumerate(parsed) if isinstance(item, ItemCreate)]
        try:
            added = await self._add_items(collection, [item for _, item in ready]) if ready else []
            for (i, _), reply in zip(ready, added, strict=True):
                answers[i] = (200, reply)
        except Exception as exc:
            if len(ready) == 1:
                answers[ready[0][0]] = refused(exc)
            else:
                for i, item in ready:
                    try:
                        answers[i] = (200, (await self._add_items(collection, [item]))[0])
                    except Exception as alone:
                        answers[i] = refused(alone)
        return [a for a in answers if a is not None]  # every line was answered above

    async def _add_items(self, collection: str, items: list[ItemCreate]) -> list[dict[str, Any]]:
        """Each item's answer as its own line's: the ItemList the online route gives for one item."""
        added = await self._service("vector_store").add_items.remote(collection, ItemsCreate(items=items))
        return [ItemList(data=[stored]).model_dump(mode="json") for stored in added.data]

    async def _index_item(self, body: dict[str, Any], owner: str | None) -> ItemCreate:
        item = {k: v for k, v in body.items() if k != "file"}
        if "file" in body:
            item["image"] = await self._line_bytes(body.get("file"), owner)
        return parse_request(ItemsCreate, {"items": [item]}).items[0]

    async def _transcription_line(self, endpoint: str, path: str, fields: dict[str, Any]) -> dict[str, Any] | str:
        line = parse_request(TranscriptionLine, fields)
        translate = endpoint.endswith("/translations")
        granularities = [] if translate else line.timestamp_granularities or []
        options = transcription_options(
            line.response_format,
            granularities,
            diarize=line.diarize,
            translate=translate,
            model=line.model,
            language=None if translate else line.language or None,
            prompt=line.prompt or None,
            temperature=line.temperature,
        )
        transcript = await self.transcribe(path, options)  # type: ignore[attr-defined]  # SpeechRoutes
        response = render_transcription(transcript, line.response_format, granularities)
        if response.media_type == "application/json":
            return json.loads(bytes(response.body))
        return bytes(response.body).decode("utf-8")

    async def _line_file(self, file_id: Any, owner: str | None) -> Path:
        """The stored bytes' path of a line's `file`: an id the batch's owner uploaded with purpose user_data."""
        if not isinstance(file_id, str) or not file_id:
            raise InvalidRequest('A media line names its media by id: `"file": "file-..."`.', param="file")
        try:
            record = await self._runner().file.remote(file_id, owner)  # type: ignore[attr-defined]  # BatchRoutes
        except Exception as exc:
            error = as_api_error(exc)
            if error.status == 404:
                raise NotFound(f"No file with id '{file_id}'.", param="file") from None
            raise error from None
        if record.purpose != "user_data":
            raise InvalidRequest(
                f"The file '{file_id}' has purpose '{record.purpose}'; media for a batch line needs 'user_data'.",
                param="file",
            )
        path = self._files_dir() / record.id  # type: ignore[attr-defined]  # BatchRoutes
        if not path.is_file():
            raise NotFound(f"The file '{file_id}' has no stored bytes (deleted?).", param="file")
        return path

    async def _line_bytes(self, file_id: Any, owner: str | None) -> bytes:
        path = await self._line_file(file_id, owner)
        return await asyncio.to_thread(path.read_bytes)  # an image: small, read off the event loop


def _collection(endpoint: str) -> str:
    match = COLLECTION_ITEMS.match(endpoint)
    if match is None:
        raise InvalidRequest(f"{endpoint} cannot be run in a batch.", param="url")
    return match.group(1)


def refused(exc: BaseException) -> LineAnswer:
    """A line's (status, error envelope) for what refused it."""
    error = as_api_error(exc)
    return error.status, error.envelope().model_dump(mode="json")
