"""Media batch lines, the media upload limit and the night window, without Ray: the real Ingress and the
real batch records over fake models (as tests/http/test_batches.py). What they do on the session app's
real models is tests/e2e/test_bulk_media.py.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime

import pytest

from serve_app.batch import runner as runner_module
from serve_app.batch.lines import answered, check_lines
from serve_app.batch.runner import BatchRunner
from serve_app.batch.store import LineResult
from serve_app.config import BatchConfig
from serve_app.errors import APIError, InvalidRequest
from serve_app.protocol import BatchCreateRequest, Item, ItemList
from tests.fakes import FakeHandle
from tests.http.support import ASR, DETECTOR, LLM, assert_envelope
from tests.images import png

TRANSCRIBE = "/v1/audio/transcriptions"


@pytest.fixture()
def batch_config(tmp_path) -> BatchConfig:
    return BatchConfig(files_dir=tmp_path / "files", max_file_bytes=4096, max_media_bytes=1 << 20)


@pytest.fixture()
def runner(batch_config, tmp_path) -> BatchRunner:
    return BatchRunner(batch_config, tmp_path, "default")


@pytest.fixture()
def vector_store():
    added = []

    def add_items(name, body):
        if any(item.image == b"corrupt" for item in body.items):  # as the embedder refuses the whole call
            raise InvalidRequest("items.0.image is not a decodable image", param="items")
        added.append((name, body))
        return ItemList(
            data=[Item(id=f"i{i}", kind="image" if it.image else "text", created=1) for i, it in enumerate(body.items)]
        )

    return FakeHandle.of("VectorStore", add_items=add_items), added


@pytest.fixture()
def client(serve_ingress, backends, runner, batch_config, vector_store):
    services = {"batch_runner": FakeHandle(runner, name="BatchRunner"), "vector_store": vector_store[0]}
    return serve_ingress(backends["models"], services, batch=batch_config)


def upload(client, data: bytes, purpose: str = "user_data") -> str:
    answer = client.post("/v1/files", data={"purpose": purpose}, files={"file": ("m.bin", data)})
    assert answer.status_code == 200, answer.text
    return answer.json()["id"]


def line(client, endpoint: str, body: dict, owner: str | None = None):
    return asyncio.run(client.replica.batch_line(endpoint, body, owner))


def test_media_up_to_its_own_limit_and_batch_files_to_theirs(client, batch_config):
    media = upload(client, b"m" * 100_000)  # past max_file_bytes: fine for media
    refused = client.post("/v1/files", data={"purpose": "batch"}, files={"file": ("in.jsonl", b"x" * 100_000)})
    assert_envelope(refused, 413)
    assert "4096" in refused.json()["error"]["message"]
    too_big = client.post("/v1/files", data={"purpose": "user_data"}, files={"file": ("v.mp4", b"v" * (2 << 20))})
    assert_envelope(too_big, 413)
    assert sorted(p.name for p in batch_config.files_dir.iterdir()) == [media]  # nothing left of the refused


def test_a_transcription_line_answers_as_the_route_srt_as_text(client, asr, batch_config):
    file_id = upload(client, b"audio bytes")
    srt = line(client, TRANSCRIBE, {"model": ASR, "file": file_id, "response_format": "srt"})
    assert isinstance(srt, str) and "-->" in srt
    assert asr.media[-1] == str(batch_config.files_dir / file_id)  # a path on the shared directory, not bytes
    assert asr.options[-1].subtitles == "srt"
    verbose = line(client, "/v1/audio/translations", {"model": ASR, "file": file_id, "response_format": "verbose_json"})
    assert verbose["segments"] and asr.options[-1].task == "translate"
    written = json.loads(answered("a", 200, srt))
    assert written["response"]["body"] == srt


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"model": ASR, "file": "file-nope"}, 404, "file"),
        ({"model": ASR}, 400, "file"),
        ({"model": ASR, "file": "BATCH"}, 400, "file"),
        ({"model": ASR, "file": "MEDIA", "response_format": "doc"}, 400, "response_format"),
        ({"model": ASR, "file": "MEDIA", "temperature": 3}, 400, "temperature"),
    ],
)
def test_a_bad_media_line_fails_alone_with_a_clear_error(client, body, status, param):
    ids = {"BATCH": upload(client, b"{}", "batch"), "MEDIA": upload(client, b"audio")}
    body = {k: ids.get(v, v) if k == "file" else v for k, v in body.items()}
    with pytest.raises(APIError) as caught:
        line(client, TRANSCRIBE, body)
    assert caught.value.status == status and caught.value.param == param


def test_a_file_belongs_to_the_batch_owner(client, runner):
    file_id = upload(client, b"audio")
    runner.store.add_file(runner.file(file_id, None).model_copy(update={"id": "file-alice"}), "alice")
    (runner._files / "file-alice").write_bytes(b"audio")
    assert line(client, TRANSCRIBE, {"model": ASR, "file": "file-alice"}, "alice")["text"]
    with pytest.raises(APIError) as caught:
        line(client, TRANSCRIBE, {"model": ASR, "file": "file-alice"}, "bob")
    assert caught.value.status == 404


def test_detection_and_indexing_lines_send_the_image_bytes(client, detector, vector_store):
    image = png()
    file_id = upload(client, image)
    found = line(client, "/v1/detections", {"model": DETECTOR, "file": file_id, "conf": 0.5})
    assert found["detections"] == [] and found["model"] == DETECTOR
    assert detector.requests[-1].image == image and detector.requests[-1].conf == 0.5
    items = line(client, "/v1/collections/photos/items", {"file": file_id, "detect": True, "metadata": {"p": "a"}})
    name, body = vector_store[1][-1]
    assert name == "photos" and body.items[0].image == image and body.items[0].detect
    assert items["data"][0]["kind"] == "image"
    line(client, "/v1/collections/photos/items", {"text": "a note"})
    assert vector_store[1][-1][1].items[0].text == "a note"


def test_a_block_of_indexing_lines_is_one_call_and_a_bad_file_fails_alone(client, vector_store):
    good = [upload(client, png()) for _ in range(3)]
    bodies = [{"file": good[0]}, {"file": "file-nope"}, {"text": "a note"}, {"file": good[1], "detect": True}]
    answers = asyncio.run(client.replica.batch_block("/v1/collections/photos/items", bodies))
    assert [status for status, _ in answers] == [200, 404, 200, 200]
    assert [len(body.items) for _, body in vector_store[1]] == [3]  # the three that parse, in one call
    assert answers[3][1]["data"][0]["kind"] == "image" and answers[2][1]["data"][0]["kind"] == "text"
    corrupt = upload(client, b"corrupt")
    bodies = [{"file": good[2]}, {"file": corrupt}, {"text": "another"}]
    answers = asyncio.run(client.replica.batch_block("/v1/collections/photos/items", bodies))
    assert [status for status, _ in answers] == [200, 400, 200]  # the whole call refused, then line by line
    assert answers[1][1]["error"]["param"] == "items"
    assert [len(body.items) for _, body in vector_store[1]][1:] == [1, 1]  # nothing stored by the refused call


def test_media_lines_are_checked_before_the_batch_runs():
    def check(endpoint: str, *bodies: dict, models=(ASR,)):
        raw = [json.dumps({"custom_id": str(i), "method": "POST", "url": endpoint, "body": b}).encode()
               for i, b in enumerate(bodies)]  # fmt: skip
        return [(e.line, e.code, e.param) for e in check_lines(raw, endpoint, models, 10)[1]]

    assert check(TRANSCRIBE, {"model": ASR, "file": "file-a"}, {"model": ASR}, {"model": "x", "file": "f"}) == [
        (2, "invalid_request", "body.file"),
        (3, "model_not_found", "body.model"),
    ]
    assert check("/v1/pipelines/video-summary", {"file": "file-a"}, {"file": "f", "model": LLM}, models=[LLM]) == []
    assert check("/v1/collections/docs/items", {"text": "t"}, models=[]) == []


def test_a_batch_may_target_media_routes_only_those(client):
    for endpoint in ("/v1/models", "/v1/collections/../items", "/v1/audio/speech"):
        body = {"input_file_id": "file-x", "endpoint": endpoint, "completion_window": "24h"}
        answer = client.post("/v1/batches", json=body)
        assert_envelope(answer, 400)
        assert answer.json()["error"]["param"] == "endpoint"
    assert BatchCreateRequest(input_file_id="f", endpoint="/v1/collections/docs/items", completion_window="24h")


class Clock:
    def __init__(self, hour: int):
        self.now = datetime(2026, 1, 1, hour)

    def __call__(self) -> datetime:
        return self.now


def test_a_batch_waits_for_the_window_unless_it_asks_for_now(tmp_path, monkeypatch):
    config = BatchConfig(files_dir=tmp_path / "files", window="22:00-06:00")
    clock = Clock(hour=12)
    runner = BatchRunner(config, tmp_path, "default", clock=clock)
    ran: list[int] = []

    def run_lines(lines, *, commit, **_):  # Ray Data's part, which tests/e2e runs for real
        ran.extend(line.idx for line in lines)
        commit([LineResult(line.idx, False, answered(line.custom_id, 200, {"ok": True})) for line in lines])
        return True

    monkeypatch.setattr(runner_module, "run_lines", run_lines)
    body = {"model": ASR, "file": "file-a"}
    source = tmp_path / "files" / "file-in"
    source.write_text(json.dumps({"custom_id": "a", "method": "POST", "url": TRANSCRIBE, "body": body}))
    from serve_app.protocol import FileObject

    runner.add_file(FileObject(id="file-in", bytes=1, created_at=1, filename="in", purpose="batch"), None)

    def create(metadata=None):
        request = BatchCreateRequest(
            input_file_id="file-in", endpoint=TRANSCRIBE, completion_window="24h", metadata=metadata
        )
        return runner.create(request, None, [ASR]).id

    night, now = create(), create({"window": "now"})
    asyncio.run(runner._carry_on(night))
    asyncio.run(runner._carry_on(now))
    held = runner.batch(night, None)
    assert held.status == "in_progress" and held.request_counts.completed == 0 and ran == [0]
    assert runner.batch(now, None).status == "completed"
    clock.now = datetime(2026, 1, 1, 23, 30)
    asyncio.run(runner._carry_on(night))
    assert runner.batch(night, None).status == "completed" and ran == [0, 0]
