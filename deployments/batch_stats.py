"""Batch-size bookkeeping shared by the batched model deployments."""

from __future__ import annotations

from collections import Counter


class BatchStats:
    """How many inputs each forward pass carried: proof that concurrent requests share passes."""

    def __init__(self) -> None:
        self._sizes: Counter[int] = Counter()

    def record(self, size: int) -> None:
        self._sizes[size] += 1

    def snapshot(self) -> dict:
        return {
            "batches": sum(self._sizes.values()),
            "inputs": sum(size * n for size, n in self._sizes.items()),
            "max_batch_size": max(self._sizes, default=0),
            "batch_sizes": {str(size): n for size, n in sorted(self._sizes.items())},
        }
