"""LoRA adapters on the CPU engine, with the real tiny Qwen2 and two tiny peft adapters (no Ray).

The adapters have random non-zero weights, so at temperature 0 each gives its own answer; what is
checked is that each request is answered by its own weights, alone or mixed in with others.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest

from deployments.llm.adapters import AdapterRefused, Adapters, check_adapter
from deployments.llm.engines.base import SamplingSettings
from deployments.llm.engines.transformers_engine import TransformersEngine
from serve_app.common.model_store import model_dir
from serve_app.config import AdapterConfig, LLMConfig
from serve_app.errors import ServiceUnavailable
from serve_app.tools.tiny_models import build_all

ADAPTERS = [
    AdapterConfig(name="lora-a", model="tiny-qwen2-lora-a", version="v1"),
    AdapterConfig(name="lora-b", model="tiny-qwen2-lora-b", version="v1"),
]
LLM = LLMConfig(served_name="tiny", model="tiny-qwen2", version="v1", adapters=ADAPTERS)
GREEDY = SamplingSettings(max_tokens=12, temperature=0.0)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("store")
    build_all(root, names=["tiny-qwen2/v1", "tiny-qwen2-lora-a", "tiny-qwen2-lora-b"])
    return root


@pytest.fixture(scope="module")
def engine(store) -> TransformersEngine:
    engine = TransformersEngine.create(model_dir(store, "tiny-qwen2", "v1"), LLM)
    for adapter in ADAPTERS:
        asyncio.run(engine.load_adapter(adapter.name, check_adapter(adapter, LLM, store)))
    return engine


async def greedy(engine: TransformersEngine, adapter: str | None, prompt: str = "Priya walked") -> str:
    settings = SamplingSettings(max_tokens=GREEDY.max_tokens, temperature=0.0, adapter=adapter)
    ids = engine.tokenizer.encode(prompt)
    return "".join([d.text async for d in engine.generate(ids, settings, f"r-{adapter}")])


async def test_each_adapter_answers_with_its_own_weights(engine):
    answers = {name: await greedy(engine, name) for name in (None, "lora-a", "lora-b")}
    assert len(set(answers.values())) == 3, answers


async def test_concurrent_base_and_adapters_each_equal_their_answer_alone(engine):
    names = [None, "lora-a", "lora-b"]
    alone = {name: await greedy(engine, name) for name in names}
    mixed = await asyncio.gather(*(greedy(engine, name) for name in names * 3))
    assert mixed == [alone[name] for name in names * 3]


async def test_unloading_every_adapter_restores_the_base(store):
    engine = TransformersEngine.create(model_dir(store, "tiny-qwen2", "v1"), LLM)
    before = await greedy(engine, None)
    await engine.load_adapter("lora-a", check_adapter(ADAPTERS[0], LLM, store))
    assert await greedy(engine, "lora-a") != before
    await engine.unload_adapter("lora-a")
    assert await greedy(engine, None) == before
    await engine.load_adapter("lora-a", check_adapter(ADAPTERS[0], LLM, store))  # and loads again
    assert await greedy(engine, "lora-a") != before


def test_a_rank_above_the_engines_maximum_is_refused_by_name(store):
    narrow = LLM.model_copy(update={"max_lora_rank": 4})
    with pytest.raises(AdapterRefused, match=r"adapters\[lora-a\]: rank 8 is above .*max_lora_rank 4"):
        check_adapter(ADAPTERS[0], narrow, store)


def test_an_adapter_of_another_base_is_refused_by_name(store):
    other = LLM.model_copy(update={"model": "tiny-llama"})
    with pytest.raises(AdapterRefused, match=r"adapters\[lora-b\]: trained on base 'tiny-qwen2'"):
        check_adapter(ADAPTERS[1], other, store)


def test_an_adapter_failing_its_manifest_is_refused_by_name(store, tmp_path):
    copy = tmp_path / "store"
    shutil.copytree(store / "tiny-qwen2-lora-a", copy / "tiny-qwen2-lora-a")
    config = copy / "tiny-qwen2-lora-a" / "v1" / "adapter_config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "r": 4}))
    with pytest.raises(AdapterRefused, match=r"adapters\[lora-a\]: .*adapter_config.json .*sha256"):
        check_adapter(ADAPTERS[0], LLM, copy)


def test_a_missing_adapter_is_refused_by_name(store):
    missing = AdapterConfig(name="lora-z", model="tiny-qwen2-lora-z", version="v1")
    with pytest.raises(AdapterRefused, match=r"adapters\[lora-z\]: model tiny-qwen2-lora-z/v1 not found"):
        check_adapter(missing, LLM, store)


class RecordingEngine:
    name = "recording"
    capabilities = frozenset({"lora"})

    def __init__(self):
        self.loaded: list[str] = []
        self.unloaded: list[str] = []

    async def load_adapter(self, name: str, path: Path) -> None:
        self.loaded.append(name)

    async def unload_adapter(self, name: str) -> None:
        self.unloaded.append(name)


async def settle() -> None:
    """Let the release __del__ scheduled run: a callback, then the task it creates."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_an_evicted_adapter_stays_loaded_until_its_last_generation_ends(store):
    engine = RecordingEngine()
    adapters = Adapters(engine, LLM, store)
    resident = await adapters._load("lora-a")  # what serve.multiplexed calls on a miss
    adapters.hold("lora-a")  # a generation in flight
    resident.__del__()  # Serve's LRU evicts it (from a worker thread)
    await settle()
    assert engine.unloaded == []
    await adapters.release("lora-a")  # the generation ends
    assert (engine.loaded, engine.unloaded) == (["lora-a"], ["lora-a"])
    resident.__del__()  # garbage collection calls it again: nothing more
    await settle()
    assert engine.unloaded == ["lora-a"]


async def test_an_adapter_whose_files_changed_after_start_answers_503_for_itself(store, tmp_path):
    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    adapters = Adapters(RecordingEngine(), LLM, copy)
    (copy / "tiny-qwen2-lora-b" / "v1" / "adapter_model.safetensors").write_bytes(b"truncated")
    with pytest.raises(ServiceUnavailable, match=r"adapter 'lora-b' could not be loaded: .*sha256") as refused:
        await adapters._load("lora-b")
    assert (refused.value.status, refused.value.code) == (503, "adapter_unavailable")
    await adapters._load("lora-a")  # the other adapter still loads
