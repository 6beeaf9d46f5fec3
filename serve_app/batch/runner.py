"""Batches from creation to their output files: validating, in_progress, finalizing, and the ways out.

`BatchRunner` owns the store and the files directory's records; the BatchRunner deployment
(deployments/batch_runner.py) is it as one Serve replica. A loop picks up every unfinished batch,
new or left by a runner that stopped, and carries it on from the state the store holds: a batch
`in_progress` reruns only its lines with no stored result, so a restart (of `make serve`, the
runner's replica or a Ray Data task's worker) neither loses nor repeats a finished line. Ray Data's
blocking iteration runs in a worker thread; records are small writes made on the event loop.

    validating -> in_progress -> finalizing -> completed
    validating -> failed                        (the input file broken, every bad line named)
    any unfinished -> cancelling -> cancelled   (what completed is kept)
    in_progress past its window -> expired      (lines not run: `batch_expired` in the error file)

With `batch.window` set (say `22:00-06:00`, the server's local time by `clock`), a validated batch
waits in_progress, nothing done, until the clock is inside it; `metadata.window: now` runs at once.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import get_args

from serve_app.batch.dataflow import run_lines, warm_up
from serve_app.batch.lines import PendingLine, check_lines, not_run
from serve_app.batch.store import BatchStore, LineResult
from serve_app.common import metrics
from serve_app.config import BatchConfig
from serve_app.errors import Conflict, InvalidRequest, NotFound
from serve_app.protocol import (
    FINAL_STATUSES,
    Batch,
    BatchCreateRequest,
    BatchError,
    BatchErrors,
    BatchList,
    BatchRequestCounts,
    BatchStatus,
    BatchUsage,
    FileList,
    FileObject,
)

logger = logging.getLogger("ray.serve")
RUN_ATTEMPTS = 5  # Ray Data pipelines restarted for one batch (a worker or a replica lost) before it fails


def _log_warm_up(done: asyncio.Future) -> None:
    if not done.cancelled() and done.exception() is not None:
        logger.error("batch runner: Ray Data's warm-up failed; the first batch starts it", exc_info=done.exception())


def new_file_id() -> str:
    return f"file-{uuid.uuid4().hex}"


class BatchRunner:
    def __init__(
        self, config: BatchConfig, data_dir: Path, app_name: str, clock: Callable[[], datetime] = datetime.now
    ):
        self._config = config
        self._clock = clock  # the server's local time, for `batch.window`; tests set their own
        self._files = config.files_path(data_dir)
        self._files.mkdir(parents=True, exist_ok=True)
        self._store = BatchStore(Path(data_dir) / "batches" / "batches.sqlite3")
        self._app_name = app_name
        self._running: dict[str, asyncio.Task] = {}
        self._warming: asyncio.Future | None = None
        self._wake = asyncio.Event()

    @property
    def store(self) -> BatchStore:
        return self._store

    # files

    def add_file(self, file: FileObject, owner: str | None) -> FileObject:
        self._store.add_file(file, owner)
        return file

    def file(self, file_id: str, owner: str | None) -> FileObject:
        file = self._store.get_file(file_id, owner)
        if file is None:
            raise NotFound(f"No file with id '{file_id}'.", param="file_id")
        return file

    def files(self, owner: str | None, purpose: str | None, limit: int, order: str, after: str | None) -> FileList:
        data, more = self._store.list_files(owner, purpose, limit, order == "desc", after)
        first, last = (data[0].id, data[-1].id) if data else (None, None)
        return FileList(data=data, first_id=first, last_id=last, has_more=more)

    def delete_file(self, file_id: str, owner: str | None) -> None:
        if not self._store.delete_file(file_id, owner):
            raise NotFound(f"No file with id '{file_id}'.", param="file_id")
        (self._files / file_id).unlink(missing_ok=True)

    # batches

    def create(self, request: BatchCreateRequest, owner: str | None, models: list[str]) -> Batch:
        source = self._store.get_file(request.input_file_id, owner)
        if source is None:
            raise NotFound(f"No file with id '{request.input_file_id}'.", param="input_file_id")
        if source.purpose != "batch":
            raise InvalidRequest(
                f"The file '{source.id}' has purpose '{source.purpose}'; a batch's input needs purpose 'batch'.",
                param="input_file_id",
            )
        created = int(time.time())
        batch = Batch(
            id=f"batch_{uuid.uuid4().hex}",
            endpoint=request.endpoint,
            input_file_id=source.id,
            completion_window=request.completion_window,
            created_at=created,
            expires_at=created + int(self._config.completion_window_s),
            metadata=request.metadata,
        )
        self._store.add_batch(batch, owner, models)
        self._wake.set()
        return batch

    def batch(self, batch_id: str, owner: str | None) -> Batch:
        batch = self._store.get_batch(batch_id, owner)
        if batch is None:
            raise NotFound(f"No batch with id '{batch_id}'.", param="batch_id")
        return self._live(batch)

    def batches(self, owner: str | None, limit: int, after: str | None) -> BatchList:
        data, more = self._store.list_batches(owner, limit, after)
        data = [self._live(batch) for batch in data]
        first, last = (data[0].id, data[-1].id) if data else (None, None)
        return BatchList(data=data, first_id=first, last_id=last, has_more=more)

    def _live(self, batch: Batch) -> Batch:
        """A running batch with its counts and usage as of its last committed line."""
        if batch.status in ("in_progress", "cancelling") and batch.request_counts.total:
            self._count(batch)
        return batch

    def cancel(self, batch_id: str, owner: str | None) -> Batch:
        batch = self.batch(batch_id, owner)
        if batch.status in FINAL_STATUSES:
            raise Conflict(f"The batch is already {batch.status}; only an unfinished batch can be cancelled.")
        if batch.status != "cancelling":
            batch.status, batch.cancelling_at = "cancelling", int(time.time())
            self._store.save_batch(batch)
        self._store.request_cancel(batch_id)
        self._wake.set()
        return self._live(batch)

    # the loop

    async def run_forever(self) -> None:
        """Start every unfinished batch not already running, then wait for a new one or the next poll."""
        # Paid now, beside the loop (a warm-up that hung must not hold batches back), not by the first batch.
        self._warming = asyncio.ensure_future(asyncio.to_thread(warm_up, self._app_name))
        self._warming.add_done_callback(_log_warm_up)
        while True:
            try:
                for batch_id in self._store.unfinished():
                    if batch_id not in self._running:
                        task = asyncio.create_task(self._carry_on(batch_id))
                        self._running[batch_id] = task
                        task.add_done_callback(functools.partial(self._forget, batch_id))
                self._record_statuses()
            except Exception:
                logger.exception("batch runner: the store could not be read; retrying")
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), self._config.poll_interval_s)
            except TimeoutError:
                pass

    def _forget(self, batch_id: str, _task: asyncio.Task) -> None:
        self._running.pop(batch_id, None)

    async def _carry_on(self, batch_id: str) -> None:
        batch = self._store.get_batch(batch_id)
        if batch is None:
            return
        try:
            lines = None
            if batch.status == "validating":
                batch, lines = self._validate(batch)
            if batch.status == "in_progress" and not self._may_run(batch):
                return  # outside the window: in_progress with nothing done; the loop looks again each poll
            if batch.status == "in_progress":
                # The lines validation just read; a batch resumed after a restart reads them again.
                batch = await self._run(batch, lines if lines is not None else self._check(batch)[0])
            if batch.status in ("finalizing", "cancelling"):
                self._finalize(batch, "cancelled" if batch.status == "cancelling" else "completed")
        except Exception as exc:
            logger.exception("batch %s failed", batch_id)
            batch = self._store.get_batch(batch_id) or batch
            self._finish(batch, "failed", f"The batch could not run: {type(exc).__name__}: {exc}")

    def _validate(self, batch: Batch) -> tuple[Batch, list[PendingLine] | None]:
        if self._store.cancel_requested(batch.id):
            return self._finish(batch, "cancelling"), None
        lines, errors = self._check(batch)
        if errors:
            batch.errors = BatchErrors(data=errors)
            return self._finish(batch, "failed"), None
        batch.request_counts = BatchRequestCounts(total=len(lines))
        return self._finish(batch, "in_progress"), lines

    def _check(self, batch: Batch) -> tuple[list[PendingLine], list[BatchError]]:
        with open(self._files / batch.input_file_id, "rb") as source:
            return check_lines(source, batch.endpoint, self._store.batch_models(batch.id), self._config.max_lines)

    def _may_run(self, batch: Batch) -> bool:
        """Inside `batch.window` (or none is set), created with `metadata.window: now`, or past its own
        completion window (then it expires, as it would otherwise never finish)."""
        if (batch.metadata or {}).get("window") == "now" or self._expired(batch):
            return True
        return self._config.in_window(self._clock().time())

    async def _run(self, batch: Batch, lines: list[PendingLine]) -> Batch:
        if not self._expired(batch):  # one past its window (it waited outside `batch.window`) runs nothing
            await self._run_pending(batch, lines)
        batch = self._store.get_batch(batch.id) or batch
        if self._store.cancel_requested(batch.id):
            return self._finish(batch, "cancelling")
        if self._expired(batch):
            self._expire_rest(batch, lines)
            return self._finalize(batch, "expired")
        return self._finish(batch, "finalizing")

    async def _run_pending(self, batch: Batch, lines: list[PendingLine]) -> None:
        """The lines with no stored result, on Ray Data; a pipeline that stops (a worker or a replica
        lost) is started again for the lines still pending, RUN_ATTEMPTS times in all."""
        for attempt in range(1, RUN_ATTEMPTS + 1):
            done = self._store.done_lines(batch.id)
            pending = [line for line in lines if line.idx not in done]
            try:
                await asyncio.to_thread(
                    run_lines,
                    pending,
                    app_name=self._app_name,
                    endpoint=batch.endpoint,
                    owner=self._store.batch_owner(batch.id),
                    config=self._config,
                    warm_cache=(batch.metadata or {}).get("cache") == "warm",
                    commit=lambda results: self._commit(batch, results),
                    stop=lambda: self._should_stop(batch),
                )
                return
            except Exception:
                if attempt == RUN_ATTEMPTS:
                    raise
                logger.exception("batch %s: its pipeline stopped; resuming (attempt %d)", batch.id, attempt + 1)
                await asyncio.sleep(attempt)

    def _commit(self, batch: Batch, results: list[LineResult]) -> None:
        # Only the line rows: a running batch's counts are read from them (`_live`), so this worker
        # thread never rewrites the batch record a cancel may be writing at the same moment.
        self._store.add_results(batch.id, results)
        failed = sum(r.failed for r in results)
        metrics.BATCH_LINES.inc(failed, tags={"outcome": "failed"})
        metrics.BATCH_LINES.inc(len(results) - failed, tags={"outcome": "completed"})

    def _should_stop(self, batch: Batch) -> bool:
        return self._store.cancel_requested(batch.id) or self._expired(batch)

    def _expired(self, batch: Batch) -> bool:
        return batch.expires_at is not None and time.time() >= batch.expires_at

    def _expire_rest(self, batch: Batch, lines: list[PendingLine]) -> None:
        done = self._store.done_lines(batch.id)
        message = "This request could not be executed before the completion window expired."
        rest = [LineResult(line.idx, True, not_run(line.custom_id, "batch_expired", message)) for line in lines]
        self._store.add_results(batch.id, [r for r in rest if r.idx not in done])

    def _finalize(self, batch: Batch, final: str) -> Batch:
        """Write the output and error files from the stored lines, then end in `final`."""
        batch.output_file_id = self._write_results(batch, failed=False)
        batch.error_file_id = self._write_results(batch, failed=True)
        return self._finish(batch, final)

    def _write_results(self, batch: Batch, *, failed: bool) -> str | None:
        lines = self._store.result_lines(batch.id, failed)
        first = next(lines, None)
        if first is None:
            return None
        file_id = new_file_id()
        path = self._files / file_id
        with open(path.with_suffix(".part"), "w", encoding="utf-8") as out:
            out.write(first + "\n")
            for line in lines:
                out.write(line + "\n")
        path.with_suffix(".part").rename(path)  # a restart mid-write leaves no half file under a file id
        kind = "error" if failed else "output"
        file = FileObject(
            id=file_id,
            bytes=path.stat().st_size,
            created_at=int(time.time()),
            filename=f"{batch.id}_{kind}.jsonl",
            purpose="batch_output",
        )
        self._store.add_file(file, self._store.batch_owner(batch.id))
        return file_id

    def _count(self, batch: Batch) -> None:
        totals = self._store.totals(batch.id)
        batch.request_counts = BatchRequestCounts(
            total=batch.request_counts.total, completed=totals.completed, failed=totals.failed
        )
        batch.usage = BatchUsage(
            input_tokens=totals.input_tokens,
            output_tokens=totals.output_tokens,
            total_tokens=totals.input_tokens + totals.output_tokens,
        )

    def _finish(self, batch: Batch, status: str, message: str | None = None) -> Batch:
        """Move `batch` to `status`, stamping its `<status>_at` and its counts, and store it."""
        batch.status = status  # type: ignore[assignment]  # one of BatchStatus, by the callers above
        stamp = f"{status}_at"
        if stamp in Batch.model_fields and getattr(batch, stamp) is None:
            setattr(batch, stamp, int(time.time()))
        if message is not None:
            batch.errors = BatchErrors(data=[BatchError(code="batch_failed", message=message)])
        if batch.request_counts.total:
            self._count(batch)
        self._store.save_batch(batch)
        return batch

    def _record_statuses(self) -> None:
        counts = self._store.status_counts()
        for status in get_args(BatchStatus):
            metrics.BATCHES.set(counts.get(status, 0), tags={"status": status})
