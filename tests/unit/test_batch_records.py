"""The Batch API's records and line checks, without Ray: the store a restarted runner resumes from."""

from __future__ import annotations

import json

from serve_app.batch.lines import MAX_NAMED_ERRORS, answered, check_lines, not_run
from serve_app.batch.store import BatchStore, LineResult
from serve_app.protocol import Batch, BatchCreateRequest, BatchOutputLine, FileObject

CHAT = "/v1/chat/completions"


def line(custom_id: str, model: str = "m", url: str = CHAT) -> bytes:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": url, "body": body}).encode()


def test_check_lines_keeps_order_and_skips_blank_lines():
    lines, errors = check_lines([line("a"), b"\n", line("b")], CHAT, ["m"], 10)
    assert errors == [] and [(x.idx, x.custom_id) for x in lines] == [(0, "a"), (1, "b")]


def test_check_lines_names_every_problem_by_its_line():
    raw = [line("a"), b"[", line("a"), line("u", url="/v1/embeddings"), line("m", model="x"), b'{"custom_id": "c"}']
    _, errors = check_lines(raw, CHAT, ["m"], 10)
    assert [(e.line, e.code) for e in errors] == [
        (2, "invalid_json_line"),
        (3, "duplicate_custom_id"),
        (4, "mismatched_endpoint"),
        (5, "model_not_found"),
        (6, "invalid_request"),
    ]


def test_check_lines_refuses_too_many_and_empty_files():
    _, errors = check_lines([line(str(i)) for i in range(4)], CHAT, ["m"], 3)
    assert errors[-1].code == "too_many_requests"
    assert check_lines([b"  \n"], CHAT, ["m"], 3)[1][0].code == "empty_file"
    _, errors = check_lines([b"[" for _ in range(MAX_NAMED_ERRORS + 5)], CHAT, ["m"], 10_000)
    assert len(errors) == MAX_NAMED_ERRORS + 1 and "5 more" in errors[-1].message


def test_output_lines_have_openais_shape():
    ok = BatchOutputLine.model_validate_json(answered("a", 200, {"object": "chat.completion"}))
    assert ok.response.status_code == 200 and ok.error is None and ok.id.startswith("batch_req_")
    lost = BatchOutputLine.model_validate_json(not_run("b", "batch_expired", "too late"))
    assert lost.response is None and lost.error.code == "batch_expired"


def test_metadata_bounds_are_openais():
    base = {"input_file_id": "f", "endpoint": CHAT, "completion_window": "24h"}
    BatchCreateRequest.model_validate({**base, "metadata": {f"k{i}": "v" * 512 for i in range(16)}})
    for metadata in ({f"k{i}": "v" for i in range(17)}, {"k" * 65: "v"}, {"k": "v" * 513}):
        try:
            BatchCreateRequest.model_validate({**base, "metadata": metadata})
        except ValueError:
            continue
        raise AssertionError(f"accepted {list(metadata)[:1]}")


def test_results_are_stored_once_and_survive_a_reopen(tmp_path):
    store = BatchStore(tmp_path / "b.sqlite3")
    store.add_batch(Batch(id="batch_1", endpoint=CHAT, input_file_id="f", created_at=1), "owner", ["m"])
    assert store.add_results("batch_1", [LineResult(0, False, "zero", 3, 4), LineResult(2, True, "two")]) == 2
    assert store.add_results("batch_1", [LineResult(0, False, "again"), LineResult(1, False, "one", 1, 1)]) == 1
    reopened = BatchStore(tmp_path / "b.sqlite3")
    assert reopened.done_lines("batch_1") == {0, 1, 2}
    assert list(reopened.result_lines("batch_1", failed=False)) == ["zero", "one"]
    totals = reopened.totals("batch_1")
    assert (totals.completed, totals.failed, totals.input_tokens, totals.output_tokens) == (2, 1, 4, 5)
    assert reopened.unfinished() == ["batch_1"] and reopened.batch_models("batch_1") == ["m"]


def test_records_belong_to_their_owner_and_page_by_after(tmp_path):
    store = BatchStore(tmp_path / "b.sqlite3")
    for i in range(3):
        store.add_file(FileObject(id=f"file-{i}", bytes=1, created_at=i, filename="x", purpose="batch"), "alice")
    store.add_file(FileObject(id="file-bob", bytes=1, created_at=9, filename="x", purpose="batch"), "bob")
    assert store.get_file("file-bob", "alice") is None and store.get_file("file-bob", None) is not None
    page, more = store.list_files("alice", None, 2, True, None)
    assert [f.id for f in page] == ["file-2", "file-1"] and more
    page, more = store.list_files("alice", "batch", 2, True, "file-1")
    assert [f.id for f in page] == ["file-0"] and not more
    assert not store.delete_file("file-0", "bob") and store.delete_file("file-0", "alice")
