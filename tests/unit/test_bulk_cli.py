"""The bulk CLI's own logic without a server: what a rerun skips, how results and failures are written.
Its run against the session app is tests/e2e/test_bulk_media.py."""

from __future__ import annotations

import argparse
import json

from serve_app.batch.lines import answered, not_run
from serve_app.tools import bulk_cli


class FakeClient:
    def __init__(self, files: dict[str, str]):
        self.files = files

    def call(self, method: str, path: str, **_):
        return self.files[path.split("/")[2]].encode()


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    bulk_cli.add_arguments(parser)
    return parser.parse_args(argv)


def test_a_rerun_skips_files_whose_results_exist(tmp_path):
    (tmp_path / "in" / "sub").mkdir(parents=True)
    for name in ("a.mp4", "sub/b.wav", "notes.pdf"):
        (tmp_path / "in" / name).write_bytes(b"x")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.mp4.vtt").write_text("WEBVTT\n")
    args = parse("transcribe", str(tmp_path / "in"), "--format", "vtt", "--out", str(tmp_path / "out"))
    job = bulk_cli.Bulk(FakeClient({}), args).plan()
    assert [p.name for p in job.todo] == ["b.wav"] and job.skipped == 1  # the pdf is not media


def test_results_are_written_and_failures_named(tmp_path):
    (tmp_path / "in").mkdir()
    args = parse("summarize", str(tmp_path / "in"), "--out", str(tmp_path / "out"))
    bulk = bulk_cli.Bulk(FakeClient({}), args)
    job = bulk_cli.Job("/v1/pipelines/video-summary")
    job.lines = [{"custom_id": c} for c in ("ok.mp4", "bad.mp4", "late.mp4", "never.mp4")]
    output = answered("ok.mp4", 200, {"srt": "1\n00:00:00,000 --> 00:00:01,000\nhi\n", "summary": "A talk."})
    errors = [
        answered("bad.mp4", 400, {"error": {"message": "The file is not a readable audio or video file."}}),
        not_run("late.mp4", "batch_expired", "This request could not be executed in time."),
    ]
    bulk.client = FakeClient({"file-out": output + "\n", "file-err": "\n".join(errors) + "\n"})
    bulk.collect(job, {"status": "cancelled", "output_file_id": "file-out", "error_file_id": "file-err"})
    assert (tmp_path / "out" / "ok.mp4.summary.txt").read_text() == "A talk.\n"
    assert (tmp_path / "out" / "ok.mp4.srt").exists() and job.done == ["ok.mp4"]
    assert job.failed == {
        "bad.mp4": "The file is not a readable audio or video file.",
        "late.mp4": "This request could not be executed in time.",
        "never.mp4": "not run: the batch is cancelled",
    }
    assert bulk.plan().skipped == 0  # nothing in the input folder


def test_index_remembers_what_it_indexed(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.png").write_bytes(b"x")
    (tmp_path / "in" / "b.txt").write_text("words")
    args = parse("index", str(tmp_path / "in"), "--collection", "c")
    bulk = bulk_cli.Bulk(FakeClient({}), args)
    bulk.write("a.png", {"data": [{"id": "i1"}]})
    job = bulk.plan()
    assert [p.name for p in job.todo] == ["b.txt"] and job.skipped == 1
    assert json.loads((tmp_path / "in" / ".bulk-index-c.jsonl").read_text()) == {"path": "a.png", "ids": ["i1"]}
    assert bulk.body(job.todo[0], job) == {"text": "words", "metadata": {"path": "b.txt"}}


def test_small_images_go_inline_until_their_total_is_reached_then_as_uploads(tmp_path, monkeypatch):
    monkeypatch.setattr(bulk_cli, "INLINE_IMAGE_BYTES", 100)
    monkeypatch.setattr(bulk_cli, "INLINE_TOTAL_BYTES", 150)
    (tmp_path / "in").mkdir()
    for name, size in (("a.png", 80), ("big.png", 120), ("b.png", 60), ("c.png", 60)):
        (tmp_path / "in" / name).write_bytes(b"i" * size)
    args = parse("index", str(tmp_path / "in"), "--collection", "photos", "--detect")
    bulk = bulk_cli.Bulk(FakeClient({}), args)
    uploaded: list[str] = []
    monkeypatch.setattr(bulk, "upload", lambda name, data, purpose="user_data": uploaded.append(name) or f"file-{name}")
    job = bulk.plan()
    bodies = {path.name: bulk.body(path, job) for path in job.todo}
    assert bodies["a.png"]["image"] and bodies["b.png"]["image"] and bodies["a.png"]["detect"]  # 80 + 60 inline
    assert bodies["big.png"] == {"file": "file-big.png", "detect": True, "metadata": {"path": "big.png"}}
    assert bodies["c.png"]["file"] == "file-c.png"  # past the total
    assert sorted(uploaded) == ["big.png", "c.png"] and sorted(job.uploaded) == ["file-big.png", "file-c.png"]
