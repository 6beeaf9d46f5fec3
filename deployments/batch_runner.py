"""The Batch API's runner: one replica owning the batch store, running each batch on Ray Data.

Only ONE process may own `<data_dir>/batches/batches.sqlite3`, so this runs as a single replica (as
GatewayState does); the Ingress's file and batch routes call it through its handle. It asks for no
CPU: its work is awaiting handles, and Ray Data's tasks, which it starts, ask none either.
Restarted (by `serve run`, Serve after a crash, or a redeploy), it resumes every unfinished batch
from the store. Thin: serve_app.batch.runner does the work.

    runner = serve.get_deployment_handle("BatchRunner", app_name="default")
    await runner.batch.remote("batch_...", None)
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from ray import serve

from serve_app.batch.runner import BatchRunner as Runner
from serve_app.config import BatchConfig
from serve_app.protocol import Batch, BatchCreateRequest, BatchList, FileList, FileObject


@serve.deployment(name="BatchRunner", ray_actor_options={"num_cpus": 0})
class BatchRunner:
    async def __init__(self, config: BatchConfig, data_dir: Path):  # async: its loop runs on the replica's
        self._runner = Runner(config, Path(data_dir), serve.get_replica_context().app_name)
        self._loop = asyncio.create_task(self._runner.run_forever())

    async def add_file(self, file: FileObject, owner: str | None) -> FileObject:
        return self._runner.add_file(file, owner)

    async def file(self, file_id: str, owner: str | None) -> FileObject:
        return self._runner.file(file_id, owner)

    async def files(
        self, owner: str | None, purpose: str | None, limit: int, order: str, after: str | None
    ) -> FileList:
        return self._runner.files(owner, purpose, limit, order, after)

    async def delete_file(self, file_id: str, owner: str | None) -> None:
        self._runner.delete_file(file_id, owner)

    async def create(self, request: BatchCreateRequest, owner: str | None, models: list[str]) -> Batch:
        return self._runner.create(request, owner, models)

    async def batch(self, batch_id: str, owner: str | None) -> Batch:
        return self._runner.batch(batch_id, owner)

    async def batches(self, owner: str | None, limit: int, after: str | None) -> BatchList:
        return self._runner.batches(owner, limit, after)

    async def cancel(self, batch_id: str, owner: str | None) -> Batch:
        return self._runner.cancel(batch_id, owner)

    def check_health(self) -> None:
        if self._loop.done():  # the loop never returns: if it did, batches would stop moving
            raise RuntimeError("the batch runner's loop stopped")
        self._runner.store.ping()
