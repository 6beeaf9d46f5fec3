"""Online traffic first: the online requests each model is serving on this replica, and a batch line's wait.

The HTTP routes of chat, completions and embeddings count their requests per model while they
run (a stream until its last chunk). A batch line for a model waits while that count is above
zero and for a short grace after it falls to zero, so the replicas serve online users first and
the batch fills the quiet moments. The lines already running finish (a batch keeps fewer in
flight than the model's `max_ongoing_requests`, so an online request never queues behind
them at Serve's router); the wait is
bounded (`batch.max_online_wait_s`), so a batch under constant online load still moves. With several
Ingress replicas each sees its own share of the online traffic: a line may slip past a busy moment
another replica saw, never starve. With `batch.online_first_scope: all` (models sharing one pool
of cores or one GPU, as on a laptop) a line waits while any model serves online requests, since a
transcription slows a chat on the same cores as much as another chat would.
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
    """`grace_s`: a model stays busy this long after its last online request ended, so a user's next
    request (a chat turn, a client's sequential loop) does not find the batch back in its way."""

    def __init__(self, grace_s: float = 0.5, across_models: bool = False) -> None:
        self._running: Counter[str] = Counter()
        self._ended: dict[str, float] = {}
        self._grace_s = grace_s
        self._across_models = across_models  # any model's online request holds every batch line back

    @contextmanager
    def serving(self, *models: str) -> Iterator[None]:
        """Count a request against each name it goes by (an alias and the target it was routed to)."""
        names = set(models)
        self._running.update(names)
        try:
            yield
        finally:
            self._running.subtract(names)
            ended = time.monotonic()
            self._ended.update(dict.fromkeys(names, ended))

    async def streaming(self, chunks: AsyncIterator[T], *models: str) -> AsyncIterator[T]:
        with self.serving(*models):
            async for chunk in chunks:
                yield chunk

    def busy(self, model: str) -> bool:
        if self._across_models:
            return any(self._busy(name) for name in set(self._running) | set(self._ended))
        return self._busy(model)

    def _busy(self, model: str) -> bool:
        if self._running[model] > 0:
            return True
        ended = self._ended.get(model)
        return ended is not None and time.monotonic() - ended < self._grace_s

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
