"""What the model deployments record: LLM token timings, batch sizes, ASR audio, store calls, model info, GPU memory.

No model and no Ray: each test drives the code that records (the generation tracker, the batch
bookkeeping, the ASR's timing wrapper, ...) with plain inputs and fakes.
"""

from __future__ import annotations

import logging
import sys
import threading
from types import SimpleNamespace

import numpy as np
import pytest

from deployments import gpu_memory
from deployments.asr import ASR
from deployments.base import ModelDeployment
from deployments.batch_stats import BatchStats
from deployments.llm.deployment import GenerationStats
from deployments.llm.engines.base import GenerationDelta
from serve_app.common import metrics
from serve_app.common.gpu_plan import GPUClaim
from serve_app.protocol import SpeechTimings, Transcript, TranscriptionOptions
from tests.fakes import RecordedMetrics

CLAIM = GPUClaim(deployment="LLM", num_gpus=0.5, budget_gb=2.0, context_gb=0.5, card="a 16GB card")


@pytest.fixture()
def recorded(monkeypatch) -> RecordedMetrics:
    return RecordedMetrics(monkeypatch)


async def _deltas(*tokens: int):
    for n in tokens:
        yield GenerationDelta(text="x" * n, new_tokens=n)
    yield GenerationDelta(text="", new_tokens=0, finish_reason="stop")


async def test_a_generation_records_ttft_and_its_mean_itl_once_and_its_tokens(recorded):
    stats = GenerationStats("tiny")
    async for _ in stats.track(_deltas(1, 2, 1), prompt_tokens=7, stream=True, started=0.0):
        pass
    assert len(recorded.samples("mms_llm_time_to_first_token_seconds", model="tiny", stream="true")) == 1
    assert recorded.samples("mms_llm_time_to_first_token_seconds", stream="false") == []
    assert len(recorded.samples("mms_llm_inter_token_latency_seconds", model="tiny")) == 1  # per generation
    assert recorded.samples("mms_llm_prompt_tokens", model="tiny") == [7]
    assert recorded.samples("mms_llm_completion_tokens", model="tiny") == [4]
    assert recorded.samples("mms_llm_requests_running", model="tiny") == [1, 0]


async def test_a_cancelled_generation_still_counts_what_it_generated(recorded):
    stats = GenerationStats("tiny")
    tracked = stats.track(_deltas(1, 1, 1), prompt_tokens=3, stream=False, started=0.0)
    await anext(tracked)
    await tracked.aclose()
    assert stats.snapshot()["cancelled"] == 1
    assert recorded.samples("mms_llm_time_to_first_token_seconds", stream="false") != []
    assert recorded.samples("mms_llm_completion_tokens") == [1]
    assert recorded.samples("mms_llm_requests_running")[-1] == 0


async def test_a_generation_that_produced_no_token_has_no_ttft(recorded):
    stats = GenerationStats("tiny")
    async for _ in stats.track(_deltas(), prompt_tokens=3, stream=True, started=0.0):
        pass
    assert recorded.samples("mms_llm_time_to_first_token_seconds") == []


def test_each_forward_pass_is_a_batch_size_sample(recorded):
    stats = BatchStats("tiny-clip")
    for size in (1, 8, 8):
        stats.record(size)
    assert recorded.samples("mms_batch_size", model="tiny-clip") == [1, 8, 8]


def test_a_transcription_records_its_audio_seconds_and_real_time_factor(recorded, monkeypatch):
    import serve_app.common.media

    asr = object.__new__(ASR.func_or_class)
    asr._config = SimpleNamespace(max_media_bytes=1 << 20, max_audio_seconds=60)
    asr._tags = {"model": "tiny-whisper"}
    monkeypatch.setattr(serve_app.common.media, "decode_audio", lambda *_a, **_k: SimpleNamespace(samples=np.zeros(4)))
    transcript = Transcript(
        model="tiny-whisper", language="en", duration=2.0, text="", segments=[], aligned=False, timings=SpeechTimings()
    )
    asr._run_whisperx = lambda audio, options: transcript
    asr._transcribe_sync(b"media", TranscriptionOptions())
    assert recorded.samples("mms_asr_audio_seconds", model="tiny-whisper") == [2.0]
    [rtf] = recorded.samples("mms_asr_real_time_factor", model="tiny-whisper")
    assert rtf == pytest.approx(transcript.timings.total / 2.0)


async def test_a_store_operation_is_timed_once_even_when_it_calls_another(recorded):
    class Store:
        @metrics.timed_store_operation("get_collection")
        async def get_collection(self):
            return "info"

        @metrics.timed_store_operation("search")
        async def search(self):
            await self.get_collection()
            raise LookupError("no such collection")

    with pytest.raises(LookupError):
        await Store().search()
    await Store().get_collection()
    operations = [tags["operation"] for _, tags in recorded.tagged("mms_vector_store_operation_seconds")]
    assert operations == ["search", "get_collection"]
    with pytest.raises(ValueError):
        metrics.timed_store_operation("drop_everything")


def test_a_loaded_model_publishes_its_info(recorded, monkeypatch):
    class Thing(ModelDeployment):
        kind, library = "detector", "ultralytics"

    thing = object.__new__(Thing)
    thing.served_name, thing.version, thing.device, thing._gpu_claim = "tiny-yolo", "tiny-yolo/v1", "cpu", None
    thing._announce_loaded()
    assert recorded.tagged("mms_model_info") == [
        (
            1,
            {
                "model": "tiny-yolo",
                "kind": "detector",
                "version": "tiny-yolo/v1",
                "engine": "ultralytics-cpu",
                "device": "cpu",
            },
        )
    ]
    assert recorded.tagged("mms_gpu_memory_used_bytes") == []


class FakeNVML:
    """Two devices; this replica (pids 10, 11) holds memory on both, a neighbour (pid 99) on one."""

    def __init__(self, processes: dict[int, list[tuple[int, int | None]]]):
        self._processes = processes

    def nvmlDeviceGetCount(self) -> int:
        return len(self._processes)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetComputeRunningProcesses(self, handle: int) -> list[SimpleNamespace]:
        return [SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in self._processes[handle]]


NVML = FakeNVML({0: [(10, 3 << 30), (99, 8 << 30)], 1: [(11, 1 << 30), (12, None)]})


def test_gpu_memory_is_summed_over_the_replicas_own_processes():
    assert gpu_memory.used_bytes(NVML, {10, 11, 12}) == 4 << 30
    assert gpu_memory.used_bytes(NVML, {42}) == 0


def test_the_reporter_sets_the_budget_and_refreshes_what_is_used(recorded):
    reads = threading.Semaphore(0)

    def pids():
        reads.release()
        return {10}

    reporter = gpu_memory.GPUMemoryReporter(NVML, CLAIM, pids=pids, interval_s=0.01).start()
    try:
        assert reads.acquire(timeout=5) and reads.acquire(timeout=5), "read at start, then again"
    finally:
        reporter.stop()
    assert recorded.samples("mms_gpu_memory_budget_bytes") == [2 << 30]
    assert set(recorded.samples("mms_gpu_memory_used_bytes")) == {3 << 30}


def test_without_nvml_there_is_one_log_line_and_no_reporter(recorded, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # `import pynvml` raises ImportError
    with caplog.at_level(logging.INFO, logger="ray.serve"):
        assert gpu_memory.start_gpu_memory_reporting(CLAIM) is None
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == ["GPU memory metrics off on this replica"]
    assert gpu_memory.start_gpu_memory_reporting(None) is None
    assert recorded.tagged("mms_gpu_memory_budget_bytes") == []


def test_a_replica_has_its_own_pid_among_its_processes():
    import os

    assert os.getpid() in gpu_memory.replica_pids()
