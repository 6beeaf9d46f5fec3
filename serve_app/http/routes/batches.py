"""OpenAI's Files and Batch APIs over HTTP.

The routes keep no state: records live with the BatchRunner deployment (one replica owning the
store), file bytes under `batch.files_dir`, named by id only, so a client's file name is a display
name and never a path. With the gateway, a file and a batch belong to the key that created them
(another key gets 404, the master key sees all), a batch may use only the key's models, and each
line is billed to that key as its online request would be.

A batch's lines come back through the app handle (serve_app.http.routes.batch_lines).
"""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import File, Form, Query, UploadFile
from fastapi.responses import FileResponse
from ray.serve.handle import DeploymentHandle

from serve_app.errors import PayloadTooLarge
from serve_app.http.app import AUTHENTICATED, JSON_API, UPLOAD_API
from serve_app.http.auth import allowed_models, current
from serve_app.http.routes.batch_lines import BatchLines
from serve_app.http.routing import delete, get, post
from serve_app.protocol import (
    COLLECTION_ITEMS,
    Batch,
    BatchCreateRequest,
    BatchList,
    FileDeleted,
    FileList,
    FileObject,
    UploadPurpose,
)

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CHUNK = 1 << 20  # an upload is copied to disk a MiB at a time, never held whole


def owner() -> str | None:
    """Whose records a request sees: its key's token (the key's hash, never the key) with the gateway on;
    None (every record) without one, or for the master key."""
    caller = current()
    if caller is None or caller.master:
        return None
    return caller.token


def display_name(filename: str | None) -> str:
    """The client's file name, shown back as given but without control characters; never used as a path."""
    return _CONTROL.sub("?", filename or "upload")[:255]


class BatchRoutes(BatchLines):
    # files

    @post("/v1/files", response_model=FileObject, dependencies=UPLOAD_API)
    async def upload_file(
        self,
        file: Annotated[UploadFile, File(description="The file's bytes; a batch input is JSONL.")],
        purpose: Annotated[
            UploadPurpose, Form(description="`batch` for a batch's input lines; `user_data` for any other.")
        ],
    ) -> Any:
        file_id = f"file-{uuid.uuid4().hex}"
        path = self._files_dir() / file_id
        part = path.with_suffix(".part")
        # The body limit let through the larger of the two limits (the purpose comes inside the
        # form); the purpose's own is checked here, as the bytes are copied.
        limit = self._batch_config().upload_limit(purpose)
        try:
            size = 0
            with open(part, "wb") as out:
                while chunk := await file.read(_CHUNK):
                    size += len(chunk)
                    if size > limit:
                        raise PayloadTooLarge(
                            f"A file with purpose '{purpose}' may be at most {limit} bytes.", param="file"
                        )
                    out.write(chunk)
            part.rename(path)
            record = FileObject(
                id=file_id,
                bytes=size,
                created_at=int(time.time()),
                filename=display_name(file.filename),
                purpose=purpose,
            )
            return await self._runner().add_file.remote(record, owner())
        except BaseException:
            part.unlink(missing_ok=True)
            path.unlink(missing_ok=True)
            raise

    @get("/v1/files", response_model=FileList, dependencies=AUTHENTICATED)
    async def list_files(
        self,
        purpose: str | None = None,
        limit: int = Query(10_000, ge=1, le=10_000),
        order: Literal["asc", "desc"] = "desc",
        after: str | None = None,
    ) -> Any:
        return await self._runner().files.remote(owner(), purpose, limit, order, after)

    @get("/v1/files/{file_id}", response_model=FileObject, dependencies=AUTHENTICATED)
    async def get_file(self, file_id: str) -> Any:
        return await self._runner().file.remote(file_id, owner())

    @delete("/v1/files/{file_id}", response_model=FileDeleted, dependencies=AUTHENTICATED)
    async def delete_file(self, file_id: str) -> Any:
        await self._runner().delete_file.remote(file_id, owner())
        return FileDeleted(id=file_id)

    @get(
        "/v1/files/{file_id}/content",
        dependencies=AUTHENTICATED,
        response_class=FileResponse,
        responses={200: {"content": {"application/octet-stream": {}}}},
    )
    async def file_content(self, file_id: str) -> Any:
        record = await self._runner().file.remote(file_id, owner())
        return FileResponse(
            self._files_dir() / record.id, media_type="application/octet-stream", filename=record.filename
        )

    # batches

    @post("/v1/batches", response_model=Batch, dependencies=JSON_API)
    async def create_batch(self, body: BatchCreateRequest) -> Any:
        return await self._runner().create.remote(body, owner(), self._batch_models(body.endpoint))

    @get("/v1/batches", response_model=BatchList, dependencies=AUTHENTICATED)
    async def list_batches(self, after: str | None = None, limit: int = Query(20, ge=1, le=100)) -> Any:
        return await self._runner().batches.remote(owner(), limit, after)

    @get("/v1/batches/{batch_id}", response_model=Batch, dependencies=AUTHENTICATED)
    async def get_batch(self, batch_id: str) -> Any:
        return await self._runner().batch.remote(batch_id, owner())

    @post("/v1/batches/{batch_id}/cancel", response_model=Batch, dependencies=AUTHENTICATED)
    async def cancel_batch(self, batch_id: str) -> Any:
        return await self._runner().cancel.remote(batch_id, owner())

    def _batch_models(self, endpoint: str) -> list[str]:
        """The models a batch for `endpoint` may name: served for that endpoint, and the key's to use."""
        if endpoint == "/v1/embeddings":
            served = set(self._models.served("embedding"))
        elif endpoint in ("/v1/audio/transcriptions", "/v1/audio/translations"):
            served = set(self._models.served("asr"))
        elif endpoint == "/v1/detections":
            served = set(self._models.served("detector"))
        elif COLLECTION_ITEMS.match(endpoint):
            served = set()  # an item is embedded by its collection's model
        else:  # chat, completions, and the pipelines' LLM
            served = set(self._models.served("llm")) | {alias.name for alias in self._traffic.aliases}
        allowed = allowed_models()
        return sorted(served if allowed is None else served & allowed)

    def _files_dir(self) -> Path:
        # build_app resolves files_dir against the app's data_dir, so the fallback is never taken there.
        directory = self._batch_config().files_path(Path("data"))
        directory.mkdir(parents=True, exist_ok=True)
        return directory

    def _runner(self) -> DeploymentHandle:
        self._batch_config()
        return self._service("batch_runner")
