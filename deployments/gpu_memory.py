"""A replica's GPU memory as NVML sees it, next to its GPU-plan budget: two gauges, refreshed in the background.

Fractional GPUs are bookkeeping (serve_app/common/gpu_plan.py): the budget is what the plan promised,
and only the card knows what the replica really holds. That is summed over the replica's own
processes (itself and its children, e.g. vLLM's engine core) on every device NVML lists. Where a
container's pid namespace hides those pids from NVML, the sum reads 0.

On a host without NVML or without a GPU (Ray may declare GPUs a CPU machine does not have),
nothing is reported and one log line says why.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from serve_app.common import metrics
from serve_app.common.gpu_plan import GPUClaim

logger = logging.getLogger("ray.serve")
_GIB = 1 << 30  # the plan's GB are the card's GiB, as in deployments/gpu_budget.py
REFRESH_S = 15.0  # about one Prometheus scrape interval


def replica_pids() -> set[int]:
    import psutil

    me = psutil.Process()
    return {me.pid, *(child.pid for child in me.children(recursive=True))}


def used_bytes(nvml: Any, pids: set[int]) -> int:
    """GPU memory held by `pids`, over every device."""
    total = 0
    for index in range(nvml.nvmlDeviceGetCount()):
        for process in nvml.nvmlDeviceGetComputeRunningProcesses(nvml.nvmlDeviceGetHandleByIndex(index)):
            # usedGpuMemory is None where the driver cannot say (e.g. under some virtualisation).
            if process.pid in pids and process.usedGpuMemory:
                total += process.usedGpuMemory
    return total


class GPUMemoryReporter:
    """Sets the budget gauge once and the used gauge every `interval_s`, on a daemon thread."""

    def __init__(
        self,
        nvml: Any,
        claim: GPUClaim,
        *,
        pids: Callable[[], set[int]] = replica_pids,
        interval_s: float = REFRESH_S,
    ):
        self._nvml = nvml
        self._claim = claim
        self._pids = pids
        self._interval_s = interval_s
        self._stop = threading.Event()

    def report(self) -> int:
        used = used_bytes(self._nvml, self._pids())
        metrics.GPU_MEMORY_USED.set(used)
        return used

    def start(self) -> GPUMemoryReporter:
        metrics.GPU_MEMORY_BUDGET.set(self._claim.budget_gb * _GIB)
        threading.Thread(target=self._loop, name="gpu-memory-metrics", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        # Off the replica's start-up path: a failing read can never fail the replica.
        while True:
            try:
                self.report()
            except Exception:
                logger.warning(
                    "%s: reading GPU memory from NVML failed; reporting stops", self._claim.deployment, exc_info=True
                )
                return
            if self._stop.wait(self._interval_s):
                return


def load_nvml() -> Any | None:
    """The initialised NVML bindings (nvidia-ml-py), or None with one log line where there is no GPU to read."""
    try:
        import pynvml

        pynvml.nvmlInit()
        if pynvml.nvmlDeviceGetCount() > 0:
            return pynvml
        reason = "NVML lists no GPU"
    except Exception as exc:  # ImportError, or NVMLError on a host without the driver
        reason = f"{type(exc).__name__}: {exc}"
    logger.info("GPU memory metrics off on this replica (%s)", reason)
    return None


def start_gpu_memory_reporting(claim: GPUClaim | None) -> GPUMemoryReporter | None:
    if claim is None:
        return None
    nvml = load_nvml()
    return GPUMemoryReporter(nvml, claim).start() if nvml is not None else None
