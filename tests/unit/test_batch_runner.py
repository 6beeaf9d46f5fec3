"""A batch's life in the runner, without Ray: the Ray Data pipeline is replaced by a stand-in that
answers each line at once (`run_lines` is the only thing the stand-in replaces); the store, the
lifecycle and the files are the real ones. Ray Data itself runs in tests/e2e/test_batch_api.py."""

from __future__ import annotations

import asyncio
import json

import pytest

from serve_app.batch import runner as runner_module
from serve_app.batch.lines import answered
from serve_app.batch.runner import BatchRunner
from serve_app.batch.store import LineResult
from serve_app.config import BatchConfig
from serve_app.protocol import BatchCreateRequest, FileObject

CHAT = "/v1/chat/completions"


def lines_file(runner: BatchRunner, tmp_path, count: int) -> str:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    text = "\n".join(
        json.dumps({"custom_id": f"c{i}", "method": "POST", "url": CHAT, "body": body}) for i in range(count)
    )
    file = FileObject(id="file-in", bytes=len(text), created_at=0, filename="in.jsonl", purpose="batch")
    (runner._files / file.id).write_text(text)
    runner.add_file(file, None)
    return file.id


@pytest.fixture()
def pipeline(monkeypatch):
    """What run_lines was asked to run, each call's line indices; answers `per_call` lines a call, then stops."""
    seen: list[list[int]] = []
    per_call = {"n": 10**9}

    def fake_run_lines(lines, *, commit, stop, **_):
        seen.append([line.idx for line in lines])
        for line in lines[: per_call["n"]]:
            commit([LineResult(line.idx, False, answered(line.custom_id, 200, {"ok": True}), 2, 3)])
            if stop():
                return False
        return True

    monkeypatch.setattr(runner_module, "run_lines", fake_run_lines)
    return seen, per_call


def make(tmp_path, **config) -> BatchRunner:
    return BatchRunner(BatchConfig(files_dir=tmp_path / "files", **config), tmp_path, "default")


def create(runner: BatchRunner, tmp_path, count: int):
    request = BatchCreateRequest(
        input_file_id=lines_file(runner, tmp_path, count), endpoint=CHAT, completion_window="24h"
    )
    return runner.create(request, None, ["m"])


def test_a_batch_runs_to_completed_with_its_files(tmp_path, pipeline):
    runner = make(tmp_path)
    batch = create(runner, tmp_path, 3)
    asyncio.run(runner._carry_on(batch.id))
    done = runner.batch(batch.id, None)
    assert done.status == "completed" and done.request_counts.completed == 3 and done.usage.total_tokens == 15
    output = runner.file(done.output_file_id, None)
    assert output.purpose == "batch_output" and done.error_file_id is None
    text = (runner._files / output.id).read_text().splitlines()
    assert [json.loads(line)["custom_id"] for line in text] == ["c0", "c1", "c2"]


def test_a_restarted_runner_runs_only_the_lines_not_stored(tmp_path, pipeline):
    seen, _ = pipeline
    first = make(tmp_path)
    batch = create(first, tmp_path, 5)
    first._validate(first.store.get_batch(batch.id))
    # What the first runner committed before it died, mid-batch.
    first.store.add_results(batch.id, [LineResult(i, False, answered(f"c{i}", 200, {}), 1, 1) for i in (0, 1)])
    restarted = make(tmp_path)  # the same store, as a new replica opens it
    assert restarted.store.unfinished() == [batch.id]
    asyncio.run(restarted._carry_on(batch.id))
    assert seen == [[2, 3, 4]]
    done = restarted.batch(batch.id, None)
    assert done.status == "completed" and done.request_counts.completed == 5
    output = (restarted._files / done.output_file_id).read_text().splitlines()
    assert [json.loads(line)["custom_id"] for line in output] == [f"c{i}" for i in range(5)]


def test_past_its_window_a_batch_expires_and_the_rest_is_written_as_expired(tmp_path, monkeypatch):
    runner = make(tmp_path, completion_window_s=60)
    batch = create(runner, tmp_path, 3)
    now = runner_module.time.time()

    def one_line_then_the_window_ends(lines, *, commit, stop, **_):
        commit([LineResult(lines[0].idx, False, answered(lines[0].custom_id, 200, {}), 1, 1)])
        monkeypatch.setattr(runner_module.time, "time", lambda: now + 120)  # the clock passes the window
        assert stop()
        return False

    monkeypatch.setattr(runner_module, "run_lines", one_line_then_the_window_ends)
    asyncio.run(runner._carry_on(batch.id))
    done = runner.batch(batch.id, None)
    assert done.status == "expired" and done.expired_at
    assert (done.request_counts.completed, done.request_counts.failed) == (1, 2)
    errors = [json.loads(line) for line in (runner._files / done.error_file_id).read_text().splitlines()]
    assert {e["error"]["code"] for e in errors} == {"batch_expired"} and all(e["response"] is None for e in errors)
    assert len((runner._files / done.output_file_id).read_text().splitlines()) == 1


def test_a_batch_already_past_its_window_runs_nothing(tmp_path, pipeline):
    seen, _ = pipeline
    runner = make(tmp_path, completion_window_s=0.001)
    batch = create(runner, tmp_path, 2)
    asyncio.run(runner._carry_on(batch.id))
    done = runner.batch(batch.id, None)
    assert done.status == "expired" and seen == [] and done.request_counts.failed == 2


def test_a_cancel_before_it_runs_ends_cancelled_with_nothing_run(tmp_path, pipeline):
    seen, _ = pipeline
    runner = make(tmp_path)
    batch = create(runner, tmp_path, 2)
    assert runner.cancel(batch.id, None).status == "cancelling"
    asyncio.run(runner._carry_on(batch.id))
    done = runner.batch(batch.id, None)
    assert done.status == "cancelled" and done.cancelled_at and seen == []
    with pytest.raises(Exception, match="already cancelled"):
        runner.cancel(batch.id, None)


def test_an_input_file_of_another_purpose_is_refused(tmp_path):
    runner = make(tmp_path)
    runner.add_file(FileObject(id="file-x", bytes=1, created_at=0, filename="x", purpose="user_data"), None)
    request = BatchCreateRequest(input_file_id="file-x", endpoint=CHAT, completion_window="24h")
    with pytest.raises(Exception, match="purpose 'batch'"):
        runner.create(request, None, ["m"])
