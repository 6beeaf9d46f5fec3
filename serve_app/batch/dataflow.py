"""A batch's lines as a Ray Data pipeline over the served replicas.

The pending lines become a dataset (`from_items`: the records are already in memory, and a reader's
tasks would ask a whole CPU each while the deployments hold the logical CPUs); `map_batches` sends
them through a pool of `LineCaller` actors that call the app's own handle, so each line meets the
same routing (aliases, adapters), validation and replicas as an online request, without the HTTP
proxy, the Ingress's middlewares or streaming. The actors only await handles: they ask no CPU, and
on a cluster Ray Data spreads them over the nodes. Results stream back as blocks finish, and the
caller commits each one before asking for the next, so a stop loses at most the lines in flight.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable
from typing import Any

from serve_app.batch.lines import PendingLine, answered
from serve_app.batch.store import LineResult
from serve_app.config import BatchConfig
from serve_app.errors import as_api_error

RETRY_WAIT_S = 1.0  # a lost replica or a full queue: Serve routes the retry elsewhere, or the queue drains
RETRYABLE = (429, 503)


class LineCaller:
    """A Ray Data actor: calls `batch_line` on the app handle for each line, a bounded number per model at once."""

    def __init__(
        self, app_name: str, endpoint: str, owner: str | None, in_flight: int, attempts: int, warm_cache: bool = False
    ):
        from ray import serve

        self._app = serve.get_app_handle(app_name)
        self._endpoint = endpoint
        self._owner = owner
        self._in_flight = in_flight
        self._attempts = attempts
        self._warm_cache = warm_cache
        self._gates: dict[str, asyncio.Semaphore] = {}

    async def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        rows = zip(batch["idx"], batch["custom_id"], batch["body"], strict=True)
        results = await asyncio.gather(*(self._line(int(i), str(c), json.loads(b)) for i, c, b in rows))
        return {
            "idx": [r.idx for r in results],
            "failed": [r.failed for r in results],
            "line": [r.line for r in results],
            "input_tokens": [r.input_tokens for r in results],
            "output_tokens": [r.output_tokens for r in results],
        }

    async def _line(self, idx: int, custom_id: str, body: dict[str, Any]) -> LineResult:
        gate = self._gates.setdefault(str(body.get("model")), asyncio.Semaphore(self._in_flight))
        for attempt in range(1, self._attempts + 1):
            async with gate:
                try:
                    answer = await self._app.batch_line.remote(self._endpoint, body, self._owner, self._warm_cache)
                except Exception as exc:
                    error = as_api_error(exc)
                    if error.status not in RETRYABLE or attempt == self._attempts:
                        body_out = error.envelope().model_dump(mode="json")
                        return LineResult(idx, True, answered(custom_id, error.status, body_out))
                else:
                    usage = answer.get("usage") or {}
                    return LineResult(
                        idx,
                        False,
                        answered(custom_id, 200, answer),
                        int(usage.get("prompt_tokens") or 0),
                        int(usage.get("completion_tokens") or 0),
                    )
            await asyncio.sleep(RETRY_WAIT_S * attempt)  # outside the gate: a waiting retry holds no slot
        raise AssertionError("unreachable: the last attempt returns")


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
    in_flight = max(1, config.max_in_flight // config.actors)
    results = dataset.map_batches(
        LineCaller,
        fn_constructor_kwargs={
            "app_name": app_name,
            "endpoint": endpoint,
            "owner": owner,
            "in_flight": in_flight,
            "attempts": config.line_attempts,
            "warm_cache": warm_cache,
        },
        batch_size=config.lines_per_task,
        concurrency=config.actors,
        num_cpus=0,  # the actors only await handles; the deployments hold the logical CPUs
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
