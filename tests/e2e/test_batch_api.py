"""OpenAI's Files and Batch APIs on the session app, through the official `openai` SDK.

Batches run on Ray Data over the session's own replicas; they are small (a few lines of a few
tokens) so the suite stays fast, but every path is the production one: upload, validation, the
actor pool calling the app handle, durable results, cancel, and a runner killed mid-batch.
"""

from __future__ import annotations

import io
import json
import re
import time

import httpx
import openai
import pytest

from tests.conftest import LOCAL_MODEL, long_story
from tests.envelopes import assert_envelope

EMBEDDER = "all-minilm-l6-v2"
CHAT = "/v1/chat/completions"


def chat_line(custom_id: str, **body) -> dict:
    messages = [{"role": "user", "content": f"Say {custom_id}."}]
    body = {"model": LOCAL_MODEL, "messages": messages, "max_tokens": 4, **body}
    return {"custom_id": custom_id, "method": "POST", "url": CHAT, "body": body}


def upload(client: openai.OpenAI, lines: list, name: str = "input.jsonl") -> str:
    text = "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n"
    return client.files.create(file=(name, io.BytesIO(text.encode())), purpose="batch").id


def create(client: openai.OpenAI, lines: list):
    return client.batches.create(input_file_id=upload(client, lines), endpoint=CHAT, completion_window="24h")


def wait(client: openai.OpenAI, batch_id: str, until: set[str], timeout_s: float = 120):
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            batch = client.batches.retrieve(batch_id)
        except openai.InternalServerError as refused:  # the runner replica restarting: 503 replica_lost
            assert refused.status_code == 503 and time.monotonic() < deadline, refused
            time.sleep(0.5)
            continue
        if batch.status in until:
            return batch
        assert time.monotonic() < deadline, f"batch still {batch.status}: {batch.request_counts}"
        time.sleep(0.25)


def results(client: openai.OpenAI, file_id: str | None) -> dict[str, dict]:
    if file_id is None:
        return {}
    lines = [json.loads(line) for line in client.files.content(file_id).text.splitlines()]
    joined = {line["custom_id"]: line for line in lines}
    assert len(joined) == len(lines), "a custom_id is written twice"
    return joined


def test_chat_batch_from_upload_to_results(openai_client):
    lines = [chat_line(f"c{i}") for i in range(5)] + [chat_line("bad", temperature=7)]
    batch = openai_client.batches.create(
        input_file_id=upload(openai_client, lines), endpoint=CHAT, completion_window="24h", metadata={"job": "e2e"}
    )
    assert batch.status == "validating" and batch.metadata == {"job": "e2e"}
    done = wait(openai_client, batch.id, {"completed", "failed"})
    assert done.status == "completed", done.errors
    assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (6, 5, 1)
    assert done.in_progress_at and done.finalizing_at and done.completed_at
    outputs = results(openai_client, done.output_file_id)
    assert sorted(outputs) == [f"c{i}" for i in range(5)]
    for line in outputs.values():
        assert line["error"] is None and line["response"]["status_code"] == 200
        assert line["response"]["body"]["object"] == "chat.completion"
        assert line["response"]["request_id"].startswith("batch_req_")
    usage = [line["response"]["body"]["usage"] for line in outputs.values()]
    assert done.usage.input_tokens == sum(u["prompt_tokens"] for u in usage)
    assert done.usage.output_tokens == sum(u["completion_tokens"] for u in usage)
    errors = results(openai_client, done.error_file_id)
    assert list(errors) == ["bad"]
    assert errors["bad"]["response"]["status_code"] == 400
    assert errors["bad"]["response"]["body"]["error"]["param"] == "temperature"
    output_file = openai_client.files.retrieve(done.output_file_id)
    assert output_file.purpose == "batch_output" and output_file.filename == f"{batch.id}_output.jsonl"


def test_embeddings_batch(openai_client):
    texts = [f"sentence number {i}" for i in range(24)]
    lines = [
        {"custom_id": f"e{i}", "method": "POST", "url": "/v1/embeddings", "body": {"model": EMBEDDER, "input": text}}
        for i, text in enumerate(texts)
    ]
    batch = openai_client.batches.create(
        input_file_id=upload(openai_client, lines), endpoint="/v1/embeddings", completion_window="24h"
    )
    done = wait(openai_client, batch.id, {"completed", "failed"})
    assert done.status == "completed" and done.request_counts.completed == 24 and done.error_file_id is None
    online = openai_client.embeddings.create(model=EMBEDDER, input=texts[3]).data[0].embedding
    batched = results(openai_client, done.output_file_id)["e3"]["response"]["body"]["data"][0]["embedding"]
    assert batched == pytest.approx(online, abs=1e-5)


def test_validation_names_each_bad_line(openai_client):
    lines = [
        chat_line("ok"),
        "{not json",
        chat_line("ok"),
        {**chat_line("url"), "url": "/v1/embeddings"},
        chat_line("model", model="no-such-model"),
        {"custom_id": "nobody", "method": "POST", "url": CHAT},
    ]
    batch = create(openai_client, lines)
    done = wait(openai_client, batch.id, {"failed", "completed"})
    assert done.status == "failed" and done.failed_at and done.output_file_id is None
    named = {(e.line, e.code) for e in done.errors.data}
    assert named == {
        (2, "invalid_json_line"),
        (3, "duplicate_custom_id"),
        (4, "mismatched_endpoint"),
        (5, "model_not_found"),
        (6, "invalid_request"),
    }


def test_cancel_keeps_what_completed(openai_client):
    lines = [{"custom_id": f"s{i}", "method": "POST", "url": CHAT, "body": long_story(48)} for i in range(48)]
    batch = create(openai_client, lines)
    wait(openai_client, batch.id, {"in_progress"})
    cancelling = openai_client.batches.cancel(batch.id)
    assert cancelling.status == "cancelling" and cancelling.cancelling_at
    done = wait(openai_client, batch.id, {"cancelled"}, timeout_s=60)
    assert done.cancelled_at and done.request_counts.completed < 48
    assert len(results(openai_client, done.output_file_id)) == done.request_counts.completed
    with pytest.raises(openai.ConflictError) as refused:  # 409: the batch's state refuses it
        openai_client.batches.cancel(batch.id)
    assert "cancelled" in refused.value.message


def test_lists_page_by_after(openai_client):
    file_ids = [upload(openai_client, [chat_line("p")], name=f"page{i}.jsonl") for i in range(3)]
    for file_id in file_ids:
        openai_client.batches.create(input_file_id=file_id, endpoint=CHAT, completion_window="24h")
    page = openai_client.batches.list(limit=2)
    assert len(page.data) == 2 and page.has_more
    following = openai_client.batches.list(limit=2, after=page.data[-1].id)
    assert following.data[0].id not in {b.id for b in page.data}
    files = openai_client.files.list(purpose="batch", limit=2, order="desc")
    assert [f.id for f in files.data] == file_ids[::-1][:2] and files.has_more


def test_a_runner_killed_mid_batch_resumes_without_duplicates(openai_client):
    import ray

    lines = [{"custom_id": f"r{i}", "method": "POST", "url": CHAT, "body": long_story(16)} for i in range(24)]
    batch = create(openai_client, lines)
    deadline = time.monotonic() + 60
    while openai_client.batches.retrieve(batch.id).request_counts.completed < 4:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    replicas = [a for a in ray.util.list_named_actors(all_namespaces=True) if "BatchRunner" in a["name"]]
    assert len(replicas) == 1
    ray.kill(ray.get_actor(replicas[0]["name"], namespace=replicas[0]["namespace"]), no_restart=True)
    done = wait(openai_client, batch.id, {"completed", "failed"}, timeout_s=180)
    assert done.status == "completed", done.errors
    assert done.request_counts.completed + done.request_counts.failed == 24
    assert sorted(results(openai_client, done.output_file_id) | results(openai_client, done.error_file_id)) == sorted(
        f"r{i}" for i in range(24)
    )


def batch_body(**fields) -> dict:
    return {"json": {"input_file_id": "file-nope", "endpoint": CHAT, "completion_window": "24h", **fields}}


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "param"),
    [
        ("POST", "/v1/files", {"data": {"purpose": "batch"}, "files": {"note": ("n", b"x")}}, 400, "file"),
        ("POST", "/v1/files", {"data": {"purpose": "tune"}, "files": {"file": ("a", b"{}")}}, 400, "purpose"),
        ("GET", "/v1/files/file-nope", {}, 404, "file_id"),
        ("GET", "/v1/batches/batch_nope", {}, 404, "batch_id"),
        ("POST", "/v1/batches/batch_nope/cancel", {}, 404, "batch_id"),
        ("POST", "/v1/batches", batch_body(completion_window="1h"), 400, "completion_window"),
        ("POST", "/v1/batches", batch_body(endpoint="/v1/moderations"), 400, "endpoint"),
        ("POST", "/v1/batches", batch_body(metadata={f"k{i}": "v" for i in range(17)}), 400, "metadata"),
        ("POST", "/v1/batches", batch_body(), 404, "input_file_id"),
    ],
)
def test_bad_input_gets_an_envelope(local_app, method, path, kwargs, status, param):
    answer = httpx.request(method, f"{local_app}{path}", timeout=30, **kwargs)
    assert_envelope(answer, status)
    assert answer.json()["error"]["param"] == param


def test_a_file_name_is_a_display_name_only(openai_client, local_app):
    sneaky = "../../etc/evil\x01.jsonl"
    created = openai_client.files.create(file=(sneaky, io.BytesIO(b"{}\n")), purpose="user_data")
    # httpx percent-encodes the control character; the name is shown back as the server got it
    assert created.filename.startswith("../../etc/evil") and created.bytes == 3
    assert all(ord(c) >= 32 for c in created.filename)
    assert openai_client.files.content(created.id).content == b"{}\n"
    batch = httpx.post(
        f"{local_app}/v1/batches",
        json={"input_file_id": created.id, "endpoint": CHAT, "completion_window": "24h"},
        timeout=30,
    )
    assert_envelope(batch, 400)
    assert batch.json()["error"]["param"] == "input_file_id"
    assert openai_client.files.delete(created.id).deleted
    with pytest.raises(openai.NotFoundError):
        openai_client.files.retrieve(created.id)


def test_the_cli_submits_waits_and_writes_the_results_beside_the_input(local_app, tmp_path):
    import subprocess
    import sys

    source = tmp_path / "prompts.jsonl"
    source.write_text("\n".join(json.dumps(chat_line(f"cli{i}")) for i in range(3)) + "\n")
    command = [sys.executable, "-m", "serve_app", "batch", "--url", local_app, "submit", str(source)]
    run = subprocess.run([*command, "--endpoint", CHAT, "--wait"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "completed: 3 completed, 0 failed" in run.stdout
    written = [json.loads(line) for line in (tmp_path / "prompts.output.jsonl").read_text().splitlines()]
    assert sorted(line["custom_id"] for line in written) == ["cli0", "cli1", "cli2"]
    assert not (tmp_path / "prompts.errors.jsonl").exists()
    # Progress as plain lines (no terminal here), then the summary; three short lines may finish
    # before the first poll sees them run.
    assert re.match(r"batch_\w+ (validating|in_progress): \d+/\d+ \(\d+ failed\)$", run.stderr.splitlines()[0])
