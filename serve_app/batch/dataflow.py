"""A batch's lines as a Ray Data pipeline over the served replicas.

The pending lines become a dataset (`from_items`: the records are already in memory, and a reader's
tasks would ask a whole CPU each while the deployments hold the logical CPUs); `map_batches` sends
each block through `call_block`, a task that calls the app's own handle, so each line meets the
same routing (aliases, adapters), validation and replicas as an online request, without the HTTP
proxy, the Ingress's middlewares or streaming. Tasks, not an actor pool: an actor is a new process
to start for every batch (a second or more, longer than a small batch's work), while a task runs
in a worker Ray keeps warm, where the handle is already made. They only await handles, so they ask
no CPU, and on a cluster Ray Data spreads them over the nodes. Results stream back as blocks
finish, and the caller commits each one before asking for the next, so a stop loses at most the
lines in flight.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from serve_app.batch.lines import PendingLine, answered
from serve_app.batch.store import LineResult
from serve_app.common.serve_status import app_status
from serve_app.config import BatchConfig
from serve_app.errors import as_api_error
from serve_app.protocol import COLLECTION_ITEMS, MEDIA_BATCH_ENDPOINTS

RETRY_WAIT_S = 1.0  # a lost replica or a full queue: Serve routes the retry elsewhere, or the queue drains
RETRYABLE = (429, 503)


@dataclass(frozen=True)
class _Row:
    idx: int
    custom_id: str
    body: dict[str, Any]


_APPS: dict[str, Any] = {}  # app name -> its handle, made once per worker process


def warm_up(app_name: str, look_s: float = 2.0, patience_s: float = 300.0) -> None:
    """One empty block through a task, once the app is RUNNING: the runner's Ray Data executor and a
    worker with this module imported and the app's handle made (seconds, cold) are then ready for
    the first batch, which would otherwise wait for them. Not before: Ray Data's actors and the
    worker would take CPU from the replicas still loading, and the app's start is what users wait
    on. Blocking."""
    waited = 0.0
    while waited < patience_s and app_status(app_name).status != "RUNNING":
        time.sleep(look_s)
        waited += look_s
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False
    dataset = ray.data.from_items([{"idx": 0}])
    dataset.map_batches(_make_handle, fn_kwargs={"app_name": app_name}, num_cpus=0).materialize()


def _make_handle(batch: dict[str, Any], app_name: str) -> dict[str, Any]:
    if app_name not in _APPS:
        from ray import serve

        _APPS[app_name] = serve.get_app_handle(app_name)
    return batch


def call_block(batch: dict[str, Any], **settings: Any) -> dict[str, list]:
    """A Ray Data task: one block of lines through `LineCaller` (blocking, on the task's own loop)."""
    return asyncio.run(LineCaller(**settings)(batch))


class LineCaller:
    """Sends a block of lines to the app handle, a bounded number per model at once.

    Chat and completion lines go one per call (`batch_line`): the engine batches them continuously,
    so each finished line makes room for the next. Embedding lines and a collection's items go as the
    whole block in one call (`batch_block`): an embedding costs less than the calls would.
    A line refused for a full queue or a lost replica (429, 503) is tried again, up to `attempts` times.
    """

    def __init__(
        self, app_name: str, endpoint: str, owner: str | None, in_flight: int, attempts: int, warm_cache: bool = False
    ):
        _make_handle({}, app_name)
        self._app = _APPS[app_name]
        self._endpoint = endpoint
        self._owner = owner
        self._in_flight = in_flight
        self._attempts = attempts
        self._warm_cache = warm_cache
        self._gates: dict[str, asyncio.Semaphore] = {}

    async def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        rows = [
            _Row(int(i), str(c), json.loads(b))
            for i, c, b in zip(batch["idx"], batch["custom_id"], batch["body"], strict=True)
        ]
        if self._endpoint == "/v1/embeddings" or COLLECTION_ITEMS.match(self._endpoint):
            results = await self._block(rows)
        else:
            results = await asyncio.gather(*(self._line(row) for row in rows))
        return {
            "idx": [r.idx for r in results],
            "failed": [r.failed for r in results],
            "line": [r.line for r in results],
            "input_tokens": [r.input_tokens for r in results],
            "output_tokens": [r.output_tokens for r in results],
        }

    async def _line(self, row: _Row) -> LineResult:
        gate = self._gates.setdefault(str(row.body.get("model")), asyncio.Semaphore(self._in_flight))
        for attempt in range(1, self._attempts + 1):
            async with gate:
                try:
                    answer = await self._app.batch_line.remote(self._endpoint, row.body, self._owner, self._warm_cache)
                    status = 200
                except Exception as exc:
                    status, answer = _refusal(exc)
            if status not in RETRYABLE or attempt == self._attempts:
                return _result(row, status, answer)
            await asyncio.sleep(RETRY_WAIT_S * attempt)  # outside the gate: a waiting retry holds no slot
        raise AssertionError("unreachable: the last attempt returns")

    async def _block(self, rows: list[_Row]) -> list[LineResult]:
        done: dict[int, LineResult] = {}
        pending = rows
        for attempt in range(1, self._attempts + 1):
            try:
                bodies = [row.body for row in pending]
                answers = await self._app.batch_block.remote(self._endpoint, bodies, self._owner, self._warm_cache)
            except Exception as exc:
                answers = [_refusal(exc)] * len(pending)
            retry = []
            for row, (status, answer) in zip(pending, answers, strict=True):
                if status in RETRYABLE and attempt < self._attempts:
                    retry.append(row)
                else:
                    done[row.idx] = _result(row, status, answer)
            if not retry:
                break
            pending = retry
            await asyncio.sleep(RETRY_WAIT_S * attempt)
        return [done[row.idx] for row in rows]


def _refusal(exc: BaseException) -> tuple[int, dict[str, Any]]:
    error = as_api_error(exc)
    return error.status, error.envelope().model_dump(mode="json")


def _result(row: _Row, status: int, answer: dict[str, Any] | str) -> LineResult:
    if status != 200:
        return LineResult(row.idx, True, answered(row.custom_id, status, answer))
    usage = (answer.get("usage") if isinstance(answer, dict) else None) or {}  # SRT, VTT, text: a string
    tokens_in, tokens_out = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    return LineResult(row.idx, False, answered(row.custom_id, 200, answer), tokens_in, tokens_out)


def run_lines(
    lines: list[PendingLine],
    *,
    app_name: str,
    endpoint: str,
    owner: str | None,
    config: BatchConfig,
    warm_cache: bool = False,
    commit: Callable[[list[LineResult]], None],
    stop: Callable[[], bool],
) -> bool:
    """Run `lines` to the end (True), or until `stop()` says so between results (False). Blocking."""
    import ray.data

    if not lines:
        return True
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the batch's own progress is its request_counts
    items = [{"idx": line.idx, "custom_id": line.custom_id, "body": json.dumps(line.body)} for line in lines]
    dataset = ray.data.from_items(items, override_num_blocks=max(1, math.ceil(len(items) / config.lines_per_task)))
    per_model = config.max_media_in_flight if endpoint in MEDIA_BATCH_ENDPOINTS else config.max_in_flight
    in_flight = max(1, per_model // config.tasks)
    results = dataset.map_batches(
        call_block,
        fn_kwargs={
            "app_name": app_name,
            "endpoint": endpoint,
            "owner": owner,
            "in_flight": in_flight,
            "attempts": config.line_attempts,
            "warm_cache": warm_cache,
        },
        batch_size=config.lines_per_task,
        concurrency=config.tasks,
        num_cpus=0,  # the tasks only await handles; the deployments hold the logical CPUs
    )
    for block in results.iter_batches(batch_size=None, batch_format="numpy"):
        commit(
            [
                LineResult(int(i), bool(f), str(line), int(t_in), int(t_out))
                for i, f, line, t_in, t_out in zip(
                    block["idx"],
                    block["failed"],
                    block["line"],
                    block["input_tokens"],
                    block["output_tokens"],
                    strict=True,
                )
            ]
        )
        if stop():
            return False
    return True
