"""Online traffic first: the online requests each model is serving on this replica, and a batch line's wait.

The HTTP routes of chat, completions and embeddings count their requests per model while they
run (a stream until its last chunk). A batch line for a model waits while that count is above
zero, so the replicas serve online users first and the batch fills the quiet moments; the wait is
bounded (`batch.max_online_wait_s`), so a batch under constant online load still moves. With several
Ingress replicas each sees its own share of the online traffic: a line may slip past a busy moment
another replica saw, never starve.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import TypeVar

from serve_app.common import metrics

T = TypeVar("T")
POLL_S = 0.02  # how often a waiting line looks again: a tiny model's decode step on CPU


class OnlineLoad:
    def __init__(self) -> None:
        self._running: Counter[str] = Counter()

    @contextmanager
    def serving(self, *models: str) -> Iterator[None]:
        """Count a request against each name it goes by (an alias and the target it was routed to)."""
        names = set(models)
        self._running.update(names)
        try:
            yield
        finally:
            self._running.subtract(names)

    async def streaming(self, chunks: AsyncIterator[T], *models: str) -> AsyncIterator[T]:
        with self.serving(*models):
            async for chunk in chunks:
                yield chunk

    def busy(self, model: str) -> bool:
        return self._running[model] > 0

    async def wait_quiet(self, model: str, max_wait_s: float) -> float:
        """Wait while online requests to `model` run, at most `max_wait_s`; the seconds waited."""
        if not self.busy(model):
            return 0.0
        metrics.BATCH_ONLINE_WAITS.inc(tags={"model": model})
        started = time.monotonic()
        deadline = started + max_wait_s
        while self.busy(model) and time.monotonic() < deadline:
            await asyncio.sleep(POLL_S)
        return time.monotonic() - started
