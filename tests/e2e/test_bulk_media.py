"""Bulk media on the session app: `python -m serve_app bulk` over the Batch API, on the real models.

Three short generated videos (one corrupt) to SRT through the tiny Whisper; a rerun that does no
work; images and texts indexed into a CLIP collection with detections, then found by a search; a
media batch line whose file is of the wrong purpose failing alone. Kept short: a second of speech
per video, a few images.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import uuid

import httpx
import srt

from tests.e2e.test_batch_api import results, wait
from tests.images import png
from tests.speech_media import encode, speech

CLIP = "tiny-clip"


def bulk(local_app: str, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "serve_app", "bulk", *args, "--base-url", local_app]
    return subprocess.run(command, capture_output=True, text=True, timeout=240)


def test_bulk_transcribe_a_folder_to_srt_then_a_rerun_does_nothing(local_app, openai_client, tmp_path):
    folder, out = tmp_path / "videos", tmp_path / "subtitles"
    (folder / "day2").mkdir(parents=True)
    (folder / "a.mp4").write_bytes(encode(speech(1.5), "mp4", video=True))
    (folder / "day2" / "b.mp4").write_bytes(encode(speech(1.0), "mp4", video=True))
    (folder / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is no video at all")
    first = bulk(
        local_app, "transcribe", str(folder), "--format", "srt", "--out", str(out), "--language", "en", "--now"
    )
    assert first.returncode == 1, first.stdout + first.stderr  # one file failed
    assert "transcribe: 2 done, 0 skipped (done before), 1 failed" in first.stdout
    assert "failed broken.mp4: " in first.stdout and "not a readable audio or video file" in first.stdout
    for name in ("a.mp4.srt", "day2/b.mp4.srt"):
        cues = list(srt.parse((out / name).read_text()))
        assert [c.index for c in cues] == list(range(1, len(cues) + 1)) and all(c.end > c.start for c in cues)
    assert not (out / "broken.mp4.srt").exists()
    batches = len(openai_client.batches.list(limit=100).data)
    (folder / "broken.mp4").unlink()
    again = bulk(local_app, "transcribe", str(folder), "--format", "srt", "--out", str(out), "--now")
    assert again.returncode == 0 and "nothing to do: 2 files already done" in again.stdout, again.stdout
    assert len(openai_client.batches.list(limit=100).data) == batches  # no batch made


def test_bulk_index_images_and_texts_then_search_finds_them(local_app, tmp_path):
    folder, collection = tmp_path / "catalog", f"bulk{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    (folder / "red.png").write_bytes(png("square", "red"))
    (folder / "blue.png").write_bytes(png("circle", "blue"))
    (folder / "note.txt").write_text("a red square on a white table")
    (folder / "bad.png").write_bytes(b"not an image")
    run = bulk(local_app, "index", str(folder), "--collection", collection, "--model", CLIP, "--detect", "--now")
    assert "index: 3 done" in run.stdout and "failed bad.png" in run.stdout, run.stdout + run.stderr
    api = httpx.Client(base_url=local_app, timeout=60)
    found = api.post(f"/v1/collections/{collection}/search", json={"query": "a red square", "top_k": 10}).json()
    paths = {hit["item"]["metadata"]["path"] for hit in found["data"]}
    assert paths == {"red.png", "blue.png", "note.txt"}
    images = [hit["item"] for hit in found["data"] if hit["item"]["kind"] == "image"]
    assert all(item["detections"] is not None for item in images)  # --detect stored them
    again = bulk(local_app, "index", str(folder), "--collection", collection, "--now")
    assert "nothing to do" not in again.stdout and "index: 0 done, 3 skipped" in again.stdout  # only bad.png again
    api.delete(f"/v1/collections/{collection}")


def test_a_media_line_with_a_wrong_file_fails_alone(openai_client):
    good = openai_client.files.create(file=("a.wav", io.BytesIO(encode(speech(1.0), "wav"))), purpose="user_data")
    wrong = openai_client.files.create(file=("in.jsonl", io.BytesIO(b"{}\n")), purpose="batch")
    lines = [
        {"custom_id": cid, "method": "POST", "url": "/v1/audio/transcriptions", "body": {"model": "whisper-1", **body}}
        for cid, body in [
            ("good", {"file": good.id, "response_format": "verbose_json"}),
            ("purpose", {"file": wrong.id}),
            ("unknown", {"file": "file-missing"}),
        ]
    ]
    text = "".join(json.dumps(line) + "\n" for line in lines).encode()
    source = openai_client.files.create(file=("media.jsonl", io.BytesIO(text)), purpose="batch")
    batch = openai_client.batches.create(
        input_file_id=source.id,
        endpoint="/v1/audio/transcriptions",
        completion_window="24h",
        metadata={"window": "now"},
    )
    done = wait(openai_client, batch.id, {"completed", "failed"})
    assert done.status == "completed" and (done.request_counts.completed, done.request_counts.failed) == (1, 2)
    body = results(openai_client, done.output_file_id)["good"]["response"]["body"]
    assert body["duration"] > 0 and "segments" in body
    errors = results(openai_client, done.error_file_id)
    assert errors["purpose"]["response"]["status_code"] == 400 and "user_data" in str(errors["purpose"])
    assert errors["unknown"]["response"]["status_code"] == 404
    assert errors["unknown"]["response"]["body"]["error"]["param"] == "file"
