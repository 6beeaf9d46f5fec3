"""The Files and Batch routes over HTTP, without Ray: the real Ingress and the real batch records (the
runner's store in a tmp dir behind a fake handle, as the BatchRunner deployment serves it, its loop not
started), with and without the gateway. What a batch then does on Ray Data is tests/e2e/test_batch_api.py.
"""

from __future__ import annotations

import asyncio
import io
import json
import time

import openai
import pytest

from serve_app.batch.runner import BatchRunner
from serve_app.config import BatchConfig, CacheConfig, GatewayConfig
from serve_app.gateway.service import STATE_SERVICE
from serve_app.gateway.sqlite import SQLiteState
from serve_app.http.online_load import OnlineLoad
from serve_app.http.routes.batches import display_name
from tests.fakes import FakeHandle
from tests.http.support import LLM, assert_envelope

MASTER = "sk-master-0123456789"
ADMIN = {"authorization": f"Bearer {MASTER}"}
CHAT = "/v1/chat/completions"
LINE = {"custom_id": "a", "method": "POST", "url": CHAT, "body": {"model": LLM, "messages": []}}


@pytest.fixture()
def batch_config(tmp_path) -> BatchConfig:
    return BatchConfig(files_dir=tmp_path / "files", max_file_bytes=4096, max_media_bytes=4096)


@pytest.fixture()
def runner(batch_config, tmp_path) -> BatchRunner:
    return BatchRunner(batch_config, tmp_path, "default")


@pytest.fixture()
def start(serve_ingress, backends, runner, batch_config, tmp_path, monkeypatch):
    def start(*, gateway: bool = False, **gateway_fields):
        services = {"batch_runner": FakeHandle(runner, name="BatchRunner")}
        if gateway:
            monkeypatch.setenv("SERVE_MASTER_KEY", MASTER)
            services[STATE_SERVICE] = FakeHandle(SQLiteState(tmp_path / "state.sqlite3"), name="GatewayState")
        config = GatewayConfig(**gateway_fields) if gateway else None
        return serve_ingress(backends["models"], services, gateway=config, batch=batch_config)

    return start


def sdk(client, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url="http://testserver/v1", api_key=key, http_client=client, max_retries=0)


def test_upload_list_read_and_delete(start, batch_config):
    client = sdk(start())
    created = client.files.create(file=("in.jsonl", io.BytesIO(json.dumps(LINE).encode())), purpose="batch")
    assert created.purpose == "batch" and created.bytes == len(json.dumps(LINE))
    assert [f.id for f in client.files.list().data] == [created.id]
    assert json.loads(client.files.content(created.id).content) == LINE
    assert sorted(p.name for p in batch_config.files_dir.iterdir()) == [created.id]  # stored by id, nothing else
    assert client.files.delete(created.id).deleted
    assert list(batch_config.files_dir.iterdir()) == []
    with pytest.raises(openai.NotFoundError):
        client.files.content(created.id)


def test_an_upload_over_the_files_limit_is_413_and_leaves_nothing(start, batch_config):
    client = start()
    declared = client.post("/v1/files", data={"purpose": "batch"}, files={"file": ("big.jsonl", b"x" * 5000)})
    assert_envelope(declared, 413)

    def chunks():
        yield b'--b\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\n'
        for _ in range(10):
            yield b"y" * 1000

    streamed = client.post("/v1/files", content=chunks(), headers={"content-type": "multipart/form-data; boundary=b"})
    assert_envelope(streamed, 413)
    assert not batch_config.files_dir.exists() or list(batch_config.files_dir.iterdir()) == []
    assert client.get("/v1/files").json()["data"] == []


def test_routes_say_when_batches_are_not_configured(serve_ingress, backends):
    client = serve_ingress(**backends)
    assert_envelope(client.get("/v1/batches"), 503)


def test_files_and_batches_belong_to_their_key(start):
    client = start(gateway=True)
    keys = [client.post("/key/generate", json={}, headers=ADMIN).json()["key"] for _ in range(2)]
    alice, bob = sdk(client, keys[0]), sdk(client, keys[1])
    file = alice.files.create(file=("in.jsonl", io.BytesIO(json.dumps(LINE).encode())), purpose="batch")
    batch = alice.batches.create(input_file_id=file.id, endpoint=CHAT, completion_window="24h")
    for call in (lambda: bob.files.retrieve(file.id), lambda: bob.batches.retrieve(batch.id)):
        with pytest.raises(openai.NotFoundError):
            call()
    with pytest.raises(openai.NotFoundError):
        bob.batches.create(input_file_id=file.id, endpoint=CHAT, completion_window="24h")
    assert bob.batches.list().data == [] and [b.id for b in alice.batches.list().data] == [batch.id]
    assert [b.id for b in sdk(client, MASTER).batches.list().data] == [batch.id]  # the admin sees every batch


def test_a_key_limited_to_some_models_may_batch_only_those(start, runner):
    client = start(gateway=True)
    key = client.post("/key/generate", json={"models": ["other-model"]}, headers=ADMIN).json()["key"]
    limited = sdk(client, key)
    file = limited.files.create(file=("in.jsonl", io.BytesIO(json.dumps(LINE).encode())), purpose="batch")
    batch = limited.batches.create(input_file_id=file.id, endpoint=CHAT, completion_window="24h")
    assert runner.store.batch_models(batch.id) == []  # the line's model then fails validation, by line


def test_a_batch_line_waits_for_online_requests_to_its_model(start):
    client = start()
    replica = client.replica
    body = {"model": LLM, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}

    async def scenario() -> tuple[float, dict]:
        loop = asyncio.get_running_loop()
        with replica._online.serving(LLM):
            line = asyncio.ensure_future(replica.batch_line(CHAT, body))
            started = loop.time()
            await asyncio.sleep(0.2)
            assert not line.done()  # held back while the online request runs
        answer = await line
        return loop.time() - started, answer

    waited, answer = asyncio.run(scenario())
    assert waited >= 0.2 and answer["object"] == "chat.completion" and answer["usage"]["completion_tokens"] > 0
    with pytest.raises(Exception, match="cannot stream"):
        asyncio.run(replica.batch_line(CHAT, {**body, "stream": True}))


def test_with_scope_all_any_models_online_request_holds_lines_back():
    per_model, shared = OnlineLoad(grace_s=0.0), OnlineLoad(grace_s=0.0, across_models=True)
    for load in (per_model, shared):
        with load.serving("tiny-qwen2"):
            assert load.busy("tiny-qwen2")
            assert load.busy("whisper-1") is (load is shared)  # a transcription line waits only if shared
        assert not load.busy("whisper-1") and not load.busy("tiny-qwen2")


def test_each_batch_line_is_billed_to_the_key_that_made_the_batch(start):
    client = start(gateway=True)
    generated = client.post("/key/generate", json={}, headers=ADMIN).json()
    body = {"model": LLM, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    answer = asyncio.run(client.replica.batch_line(CHAT, body, generated["token"]))
    deadline = time.monotonic() + 5
    while not (entries := client.get("/usage", params={"key": generated["key"]}, headers=ADMIN).json()["data"]):
        assert time.monotonic() < deadline, "the line was not billed"
        time.sleep(0.02)
    assert entries[0]["route"] == CHAT and entries[0]["model"] == LLM
    assert entries[0]["completion_tokens"] == answer["usage"]["completion_tokens"]


def test_a_warm_batch_line_answers_the_same_request_online_from_the_cache(start, llm):
    client = start(gateway=True, cache=CacheConfig(routes=["chat"], ttl_s=60))
    key = client.post("/key/generate", json={}, headers=ADMIN).json()["key"]
    greedy = {"model": LLM, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, "temperature": 0}
    answer = asyncio.run(client.replica.batch_line(CHAT, greedy, None, True))
    online = client.post(CHAT, json=greedy, headers={"authorization": f"Bearer {key}"})
    assert online.headers["x-cache"] == "hit" and online.json() == answer and len(llm.prompts) == 1
    sampled = {**greedy, "temperature": 1}
    asyncio.run(client.replica.batch_line(CHAT, sampled, None, True))
    assert client.post(CHAT, json=sampled, headers={"authorization": f"Bearer {key}"}).headers["x-cache"] == "bypass"


def test_a_file_name_is_shown_back_without_control_characters():
    assert display_name("../../etc/x\x01\n.jsonl") == "../../etc/x??.jsonl"
    assert display_name(None) == "upload" and len(display_name("a" * 1000)) == 255


def test_a_block_of_embedding_lines_is_one_call_per_model(start, serve_ingress, backends, batch_config):
    from serve_app.protocol import Embedding, EmbeddingResponse, EmbeddingUsage

    def embed_many(requests):
        return [
            EmbeddingResponse(
                data=[Embedding(index=0, embedding=[float(len(r.input))])],
                model=r.model,
                usage=EmbeddingUsage(prompt_tokens=1, total_tokens=1),
                batch_size=1,
            )
            for r in requests
        ]

    embedder = FakeHandle.of("TextEmbedder", embed_many=embed_many)
    client = serve_ingress({**backends["models"], "embedding": {"minilm": embedder}}, {}, batch=batch_config)
    bodies = [
        {"model": "minilm", "input": "ab"},
        {"model": "nope", "input": "x"},
        {"input": "x"},
        {"model": "minilm", "input": "abc"},
    ]
    answers = asyncio.run(client.replica.batch_block("/v1/embeddings", bodies))
    assert [status for status, _ in answers] == [200, 404, 400, 200]
    assert answers[3][1]["data"][0]["embedding"] == [3.0] and answers[1][1]["error"]["param"] == "model"
    assert [call.method for call in embedder.calls] == ["embed_many"] and len(embedder.calls[0].args[0]) == 2
