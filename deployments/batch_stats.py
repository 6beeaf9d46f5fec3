"""Batch-size bookkeeping shared by the batched model deployments."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any


class BatchStats:
    """How many inputs each forward pass carried: proof that concurrent requests share passes."""

    def __init__(self) -> None:
        self._sizes: Counter[int] = Counter()

    def record(self, size: int) -> None:
        self._sizes[size] += 1

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
