"""Batch-size bookkeeping shared by the batched model deployments."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from serve_app.common import metrics


class BatchStats:
    """How many inputs each forward pass carried: proof that concurrent requests share passes.

    Kept here for `stats()` and exported as `mms_batch_size`, by model (Serve adds the deployment).
    """

    def __init__(self, model: str) -> None:
        self._sizes: Counter[int] = Counter()
        self._tags = {"model": model}

    def record(self, size: int) -> None:
        self._sizes[size] += 1
        metrics.BATCH_SIZE.observe(size, self._tags)

    async def run(self, encode: Callable[[list], Sequence], items: list) -> list[tuple[Any, int]]:
        """One forward pass over `items` off the event loop, recorded; each output paired with its batch size."""
        outputs = await asyncio.to_thread(encode, items)
        self.record(len(items))
        return [(output, len(items)) for output in outputs]

    def snapshot(self) -> dict:
        return {
            "batches": sum(self._sizes.values()),
            "inputs": sum(size * n for size, n in self._sizes.items()),
            "max_batch_size": max(self._sizes, default=0),
            "batch_sizes": {str(size): n for size, n in sorted(self._sizes.items())},
        }
