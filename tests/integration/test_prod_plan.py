"""configs/prod.yaml's resource plan, scheduled on a Ray that declares one GPU.

Only the model changes (the tiny one from the store); replicas, resources and
autoscaling come from prod.yaml as written.
"""

from __future__ import annotations

import pytest
from ray import serve

from tests import serve_harness
from tests.conftest import LOCAL_MODEL

# Twelve replicas cold-start: minutes on 2 cores, longer on a loaded CI machine.
pytestmark = [pytest.mark.slow, pytest.mark.heavy, pytest.mark.timeout(900)]

APP = "prod-plan"


TINY_ADAPTERS = ["tiny-qwen2-lora-a", "tiny-qwen2-lora-b"]


def _tiny_model(app: dict) -> None:
    # Served names stay prod.yaml's, so its traffic table (the Ingress's user_config) applies as written.
    for version, llm in zip(("v1", "v2"), app["args"]["llms"], strict=True):
        llm.update(model=LOCAL_MODEL, version=version, dtype="auto", max_model_len=1024)
        for i, adapter in enumerate(llm.get("adapters", [])):
            adapter.update(model=TINY_ADAPTERS[i % 2], version="v1")
    speech = app["args"]["speech"]
    speech.update(model="tiny-whisper", version="v1", beam_size=1, max_new_tokens=24, cpu_threads=1)
    speech["aligners"] = {"en": {"model": "tiny-wav2vec2-en", "version": "v1"}}
    speech["diarization"].update(model="tiny-diarization", version="v1", cpu_threads=1)
    vision = app["args"]["vision"]
    vision["detector"].update(served_name="tiny-yolov8n", model="tiny-yolov8n", version="v1", imgsz=320)
    vision["clip"].update(served_name="tiny-clip", model="tiny-clip", version="v1")
    # No Qdrant server here: each VectorStore replica gets its own in-memory store.
    vision["qdrant"] = {"path": ":memory:"}
    env_name = app["args"]["ingress"]["api_key_env"]
    app["runtime_env"] = {"env_vars": {env_name: "sk-prod-plan-test"}}


@pytest.fixture(scope="module")
def prod_plan(serve_http):
    prod = serve_harness.application("prod.yaml", name=APP, route_prefix=f"/{APP}", edit=_tiny_model)
    with serve_harness.beside(prod, timeout_s=800):
        yield prod


async def test_llm_replica_holds_its_gpu_fraction_and_falls_back_to_cpu(prod_plan):
    budget = prod_plan["args"]["gpu_plan"]["deployments"]["LLM"]
    placement = await serve.get_deployment_handle("LLM", app_name=APP).placement.remote()
    # The builder placed it by the gpu_plan (prod.yaml's deployments list has no ray_actor_options for it).
    assert placement["assigned_resources"].get("GPU") == pytest.approx(budget["num_gpus"])
    assert placement["assigned_resources"].get("CPU") == pytest.approx(budget["num_cpus"])
    assert placement["gpu_ids"], "Ray assigned no GPU id to the replica"
    assert placement["cuda_visible_devices"] == "0"
    # Ray's GPU is only declared: torch sees no CUDA device, so `engine: auto` picks the CPU engine.
    assert placement["engine"] == "transformers"


def test_autoscaled_deployments_start_at_min_replicas(prod_plan):
    deployments = serve.status().applications[APP].deployments
    autoscaled = [d["name"] for d in prod_plan["deployments"] if "autoscaling_config" in d]
    assert {"Ingress", "LLM", "LLM-qwen2.5-1.5b-instruct", "ASR", "Diarizer", "VideoSummary", "ImageRAG"} <= set(
        autoscaled
    )
    for name in autoscaled:
        minimum = serve_harness.deployment_options(prod_plan, name)["autoscaling_config"]["min_replicas"]
        running = deployments[name].replica_states.get("RUNNING", 0)
        assert running == minimum, f"{name}: {running} running, min_replicas {minimum}"


@pytest.mark.parametrize("model", ["qwen2.5-1.5b-instruct", "support-v6", "assistant"])
async def test_prod_plan_app_serves_each_llm_adapter_and_alias(prod_plan, model):
    app = serve.get_app_handle(APP)
    reply = await app.chat.remote({"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})
    assert reply.choices[0].message.content is not None
    assert reply.model == ("qwen2.5-7b-instruct" if model == "assistant" else model)


async def test_prod_plan_transcribes_through_the_alias(prod_plan):
    from tests import speech_media

    clip = speech_media.encode(speech_media.modulated_tone(3.0), "flac")
    transcript = await serve.get_app_handle(APP).transcribe.remote(clip, {"model": "whisper-1", "language": "en"})
    assert transcript.model == prod_plan["args"]["speech"]["served_name"]
    assert transcript.duration == pytest.approx(3.0, abs=0.05)


def test_every_planned_deployment_runs_on_its_gpu_fraction_within_one_gpu(prod_plan):
    # Each replica re-checks that Ray granted its planned fraction and refuses to start
    # otherwise, so RUNNING replicas of every planned deployment prove the placement.
    deployments = serve.status().applications[APP].deployments
    plan = prod_plan["args"]["gpu_plan"]["deployments"]
    assert set(plan) == {
        "LLM",
        "LLM-qwen2.5-1.5b-instruct",
        "ASR",
        "Diarizer",
        "Detector",
        "ClipEmbedder",
        "TextEmbedder",
    }
    for name in plan:
        assert deployments[name].replica_states.get("RUNNING", 0) >= 1, name
    assert 0 < sum(b["num_gpus"] for b in plan.values()) <= 1.0  # one of each, at min_replicas


async def test_prod_plan_app_serves_vision(prod_plan):
    from tests.images import png

    app = serve.get_app_handle(APP)
    detected = await app.detect.remote({"model": "tiny-yolov8n", "image": png(), "max_det": 5})
    assert (detected.width, detected.height) == (320, 240)
    embedded = await app.embed.remote({"model": "tiny-clip", "input": ["hello", "world"]})
    assert [len(d.embedding) for d in embedded.data] == [32, 32]
