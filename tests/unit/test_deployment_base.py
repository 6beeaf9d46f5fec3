"""deployments.base: the start-up preamble every model deployment shares, its order, and one shape of card.

That deployments/ import nothing of HTTP is checked in test_import_rules.py (main, with the contracts merge).
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from deployments import base
from deployments.base import ModelDeployment
from deployments.embedding_common import EmbeddingDeployment
from serve_app.common.gpu_plan import GPUClaim
from serve_app.common.model_store import ModelRef, ModelStoreError
from serve_app.config import LLMConfig, parse_app_config
from tests.fakes import FakeEngine

REPO = Path(__file__).resolve().parents[2]
STORE = Path("/store")
CLAIM = GPUClaim(deployment="Thing", num_gpus=0.25, budget_gb=4.0, context_gb=0.5, card="a 16GB card")


class Preamble:
    """Stands in for the runtime, the GPU claim, the store and the CUDA probe, and records their calls in order.

    Here, not in tests/fakes.py: it patches deployments.base itself, which only these tests need.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *, cuda: bool = False, share: float | None = 0.25):
        self.calls: list[tuple] = []
        self._cuda, self._share = cuda, share
        monkeypatch.setattr(base, "configure_offline_runtime", self._runtime)
        monkeypatch.setattr(base, "claim_gpu", self._claim)
        monkeypatch.setattr(base, "verify", self._verify)
        monkeypatch.setattr(base, "cuda_available", self._cuda_available)

    def steps(self) -> list[str]:
        return [call[0] for call in self.calls]

    def _runtime(self, data_dir):
        self.calls.append(("runtime", data_dir))

    def _claim(self, claim, *, cap_torch=True):
        self.calls.append(("claim", claim, cap_torch))
        return self._share

    def _verify(self, store, name, version):
        self.calls.append(("verify", store, name, version))
        if name == "broken":
            raise ModelStoreError(f"model {name}/{version} not found")
        return ModelRef(name=name, version=version, path=Path(store) / name / version)

    def _cuda_available(self) -> bool:
        self.calls.append(("cuda",))
        return self._cuda


class Thing(ModelDeployment):
    kind, library = "detector", "somelib"


def stored(**options) -> Thing:
    return Thing("thing-1", Path("/data"), CLAIM, model_store=STORE, model="thing", version="v3", **options)


def test_runtime_then_claim_then_store_then_device(monkeypatch):
    preamble = Preamble(monkeypatch)
    thing = stored()
    # The runtime first: torch (imported by the claim and the device probe) reads its variables at import.
    assert preamble.calls == [
        ("runtime", Path("/data")),
        ("claim", CLAIM, True),
        ("verify", STORE, "thing", "v3"),
        ("cuda",),
    ]
    assert thing.ref == ModelRef("thing", "v3", STORE / "thing" / "v3")
    assert thing.model_path == STORE / "thing" / "v3"
    assert (thing.device, thing.gpu_share) == ("cpu", 0.25)


def test_a_claim_outside_torch_leaves_the_cap_off(monkeypatch):
    preamble = Preamble(monkeypatch, share=0.4)
    assert stored(cap_torch=False).gpu_share == 0.4
    assert preamble.calls[1] == ("claim", CLAIM, False)


def test_a_bad_store_entry_stops_start_up_before_the_device(monkeypatch):
    preamble = Preamble(monkeypatch)
    with pytest.raises(ModelStoreError, match="broken/v3"):
        Thing("x", Path("/data"), None, model_store=STORE, model="broken", version="v3")
    assert preamble.steps() == ["runtime", "claim", "verify"]


def test_a_configured_device_is_not_probed(monkeypatch):
    preamble = Preamble(monkeypatch, cuda=True)
    assert stored(device="cpu").device == "cpu"
    assert "cuda" not in preamble.steps()


def test_auto_picks_cuda_when_the_replica_sees_it(monkeypatch):
    Preamble(monkeypatch, cuda=True)
    assert stored().device == "cuda"


def test_a_model_outside_the_store_is_not_verified(monkeypatch, tmp_path):
    preamble = Preamble(monkeypatch)
    thing = Thing("packaged", tmp_path, None, model_path=tmp_path / "minilm")
    assert preamble.steps() == ["runtime", "claim", "cuda"]
    assert (thing.ref, thing.model_path, thing.version) == (None, tmp_path / "minilm", "minilm")


@pytest.mark.parametrize("source", [{}, {"model_store": STORE, "model": "m", "version": "v", "model_path": Path("/m")}])
def test_the_model_comes_from_exactly_one_place(monkeypatch, source):
    preamble = Preamble(monkeypatch)
    with pytest.raises(TypeError, match="Thing: pass either"):
        Thing("x", Path("/data"), None, **source)
    assert preamble.calls == []


def test_further_entries_come_from_the_same_store(monkeypatch):
    preamble = Preamble(monkeypatch)
    ref = stored()._verify("aligner", "v1")
    assert preamble.calls[-1] == ("verify", STORE, "aligner", "v1")
    assert ref.path == STORE / "aligner" / "v1"


def test_the_card_names_model_kind_engine_and_store_version(monkeypatch):
    Preamble(monkeypatch, cuda=True)
    card = stored().card(max_model_len=128)
    assert (card.id, card.kind, card.engine, card.version) == ("thing-1", "detector", "somelib-cuda", "thing/v3")
    assert card.max_model_len == 128 and card.embedding_dimension is None


class Vectors(EmbeddingDeployment):
    library, modalities = "vec", ("text", "image")

    def __init__(self):
        super().__init__("vec-1", Path("/data"), None, model_store=STORE, model="vec", version="v1")
        self._dimension = 3


def test_an_embedder_card_adds_its_dimension_and_modalities(monkeypatch):
    Preamble(monkeypatch)
    card = Vectors().card()
    assert (card.kind, card.engine, card.version) == ("embedding", "vec-cpu", "vec/v1")
    assert (card.embedding_dimension, card.input_modalities) == (3, ["text", "image"])


def test_the_llm_claims_without_the_torch_cap_and_names_its_engine(monkeypatch):
    from deployments.llm.deployment import LLM

    preamble = Preamble(monkeypatch, share=0.3)
    created = {}

    def create_engine(config, model_dir):
        created.update(config=config, model_dir=model_dir)
        return FakeEngine(name="vllm", max_model_len=2048)

    config = LLMConfig(served_name="chat", model="qwen", version="v2")
    llm = LLM.func_or_class(config, STORE, Path("/data"), CLAIM, engine_factory=create_engine)
    assert preamble.calls[1] == ("claim", CLAIM, False)
    # vLLM preallocates a fraction of the whole card: unset, it is the budget's share of it.
    assert created["config"].gpu_memory_utilization == 0.3
    assert created["model_dir"] == STORE / "qwen" / "v2"
    card = llm.card()
    assert (card.id, card.kind, card.engine, card.version, card.max_model_len) == (
        "chat",
        "llm",
        "vllm",
        "qwen/v2",
        2048,
    )


async def test_the_llm_shapes_what_its_engine_streams_and_counts_it(monkeypatch):
    from transformers import AutoTokenizer

    from deployments.llm.deployment import LLM

    Preamble(monkeypatch, share=None)
    engine = FakeEngine(("Hello", " there", " friend"))
    engine.tokenizer = AutoTokenizer.from_pretrained(REPO / "models" / "tiny-qwen2" / "v1")
    config = LLMConfig(served_name="chat", model="qwen", version="v2")
    llm = LLM.func_or_class(config, STORE, Path("/data"), engine_factory=lambda config, model_dir: engine)
    reply = await llm.completion({"model": "chat", "prompt": "Say", "max_tokens": 2})
    assert (reply.choices[0].text, reply.choices[0].finish_reason, reply.usage.completion_tokens) == (
        "Hello there",
        "length",
        2,
    )
    assert engine.calls[0][1].max_tokens == 2
    assert llm.stats() == {"in_flight": 0, "completed": 1, "cancelled": 0, "failed": 0}


MODEL_DEPLOYMENTS = {
    "LLM": "deployments.llm.deployment",
    "ASR": "deployments.asr",
    "Diarizer": "deployments.diarizer",
    "Detector": "deployments.detector",
    "ClipEmbedder": "deployments.embedder",
    "TextEmbedder": "deployments.text_embedder",
}
OTHER_DEPLOYMENTS = {
    "VectorStore": "deployments.vector_store",
    "VideoSummary": "pipelines.video_summary",
    "ImageRAG": "pipelines.image_rag",
    "GatewayState": "deployments.gateway_state",
    "BatchRunner": "deployments.batch_runner",
    "Ingress": "serve_app.http.ingress",
}
# Deployments whose class has another name, because the deployment's is a protocol type's or a
# Protocol's too: the class says what it is, the deployment keeps the name the YAML configs use.
CLASS_NAMES = {
    "VideoSummary": "VideoSummaryPipeline",
    "GatewayState": "EmbeddedGatewayState",
    "Ingress": "APIIngress",
}


@pytest.mark.parametrize("name", [*MODEL_DEPLOYMENTS, *OTHER_DEPLOYMENTS])
def test_each_class_is_named_as_its_deployment(name):
    module = importlib.import_module({**MODEL_DEPLOYMENTS, **OTHER_DEPLOYMENTS}[name])
    class_name = CLASS_NAMES.get(name, name)
    deployment = getattr(module, "Ingress" if name == "Ingress" else class_name)
    assert deployment.name == name and deployment.func_or_class.__name__ == class_name
    assert issubclass(deployment.func_or_class, ModelDeployment) == (name in MODEL_DEPLOYMENTS)


@pytest.mark.parametrize("config", ["local.yaml", "prod.yaml"])
def test_the_yaml_configs_name_only_these_deployments(config):
    app = yaml.safe_load((REPO / "configs" / config).read_text())["applications"][0]
    llms = {llm.deployment_name for llm in parse_app_config(app["args"]).llms}  # one deployment per LLM
    assert {d["name"] for d in app["deployments"]} <= {*MODEL_DEPLOYMENTS, *OTHER_DEPLOYMENTS, *llms}


def test_deployment_modules_import_no_heavy_library():
    code = (
        f"import sys, {', '.join(MODEL_DEPLOYMENTS.values())};"
        "heavy = {'torch', 'vllm', 'whisperx', 'ultralytics', 'open_clip', 'transformers', 'sentence_transformers'};"
        "heavy &= set(sys.modules); assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
