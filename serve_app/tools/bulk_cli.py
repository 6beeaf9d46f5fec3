"""`python -m serve_app bulk ...`: a folder of media through the Batch API of a running server.

    python -m serve_app bulk transcribe DIR --format srt [--out DIR]     one subtitle file per media file
    python -m serve_app bulk summarize DIR [--out DIR]                   each video's SRT and summary
    python -m serve_app bulk index DIR --collection NAME [--detect]      images and texts into a collection

Each media file is uploaded (`purpose: user_data`), named by id in one batch line (an image to
index of at most 1 MiB goes inline instead, base64 in its line, while they add up to 64 MiB: its
upload would cost more than its embedding), and the batch is followed with a progress bar on a
terminal (files done, failed, rate, time left) or a line per change otherwise. A rerun skips what
is done (its result files exist; for `index`, a list of what was indexed kept in the output
folder), so it does no work when nothing is left. Ctrl-C cancels the batch and still writes what
finished; a file that cannot be read or uploaded is reported and the rest go on. The summary at
the end names each failed file and why. It speaks only the HTTP API (`--base-url`, `--api-key`),
so it works against a remote server as well; batches wait for the server's night window
(`batch.window`) unless `--now`.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from serve_app.tools.batch_cli import Client, follow

MEDIA = {".wav", ".mp3", ".flac", ".ogg", ".m4a", ".mp4", ".webm", ".mkv", ".mov"}
IMAGES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif"}
TEXTS = {".txt", ".md"}
FORMATS = {"srt": "srt", "vtt": "vtt", "verbose_json": "json"}
INLINE_IMAGE_BYTES, INLINE_TOTAL_BYTES = 1 << 20, 64 << 20  # 85 MiB as base64: under batch.max_file_bytes (200 MiB)
UPLOADS_AT_ONCE = 4  # uploads (and deletes) in flight: each is a round trip, overlapped


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True)
    transcribe = actions.add_parser("transcribe", help="each media file to SRT, VTT or verbose JSON")
    transcribe.add_argument("--format", choices=sorted(FORMATS), default="srt")
    transcribe.add_argument("--model", default="whisper-1", help="speech model (default: whisper-1)")
    transcribe.add_argument("--language", help="ISO-639-1 code; default: detected")
    summarize = actions.add_parser("summarize", help="each video's SRT and summary")
    summarize.add_argument("--model", help="the summary's LLM; default: the server's")
    index = actions.add_parser("index", help="images and text files into a knowledge-base collection")
    index.add_argument("--collection", required=True)
    index.add_argument("--detect", action="store_true", help="store each image's detections with it")
    index.add_argument("--model", help="embedding model, to create the collection when it does not exist")
    for action in (transcribe, summarize, index):
        action.add_argument(
            "--base-url",
            "--url",
            dest="url",
            default=os.environ.get("SERVE_URL", "http://127.0.0.1:8000"),
            help="server (default: $SERVE_URL)",
        )
        action.add_argument(
            "--api-key", default=os.environ.get("OPENAI_API_KEY"), help="key (default: $OPENAI_API_KEY)"
        )
        action.add_argument("--now", action="store_true", help="run at once, not in the server's night window")
        action.add_argument("dir", type=Path, help="the folder (searched recursively)")
        action.add_argument("--out", type=Path, help="where results go (default: the folder itself)")


@dataclass
class Job:
    """What one run does: the files left to do, the lines sent for them, and how each ended."""

    endpoint: str
    todo: list[Path] = field(default_factory=list)
    skipped: int = 0
    lines: list[dict] = field(default_factory=list)
    uploaded: list[str] = field(default_factory=list)
    done: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # relative path -> why
    inlined: int = 0  # bytes of images carried in the batch's input file itself
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def inline(self, size: int) -> bool:
        """Whether an image of `size` bytes goes inline (base64 in its line) rather than as an upload:
        a small one costs a round trip more to upload than to embed, and the input file stays bounded."""
        with self._lock:  # bodies are made by several upload threads at once
            if size > INLINE_IMAGE_BYTES or self.inlined + size > INLINE_TOTAL_BYTES:
                return False
            self.inlined += size
            return True


class Bulk:
    def __init__(self, client: Client, args: argparse.Namespace):
        self.client, self.args = client, args
        self.root: Path = args.dir
        self.out: Path = args.out or args.dir

    def rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def outputs(self, rel: str) -> list[Path]:
        if self.args.action == "transcribe":
            return [self.out / f"{rel}.{FORMATS[self.args.format]}"]
        return [self.out / f"{rel}.srt", self.out / f"{rel}.summary.txt"]

    def index_log(self) -> Path:
        return self.out / f".bulk-index-{self.args.collection}.jsonl"

    def plan(self) -> Job:
        action = self.args.action
        suffixes = MEDIA if action != "index" else IMAGES | TEXTS
        endpoint = {"transcribe": "/v1/audio/transcriptions", "summarize": "/v1/pipelines/video-summary"}.get(
            action, f"/v1/collections/{getattr(self.args, 'collection', '')}/items"
        )
        job = Job(endpoint)
        indexed = set()
        if action == "index" and self.index_log().exists():
            indexed = {json.loads(line)["path"] for line in self.index_log().read_text().splitlines() if line}
        for path in sorted(p for p in self.root.rglob("*") if p.is_file() and p.suffix.lower() in suffixes):
            rel = self.rel(path)
            if rel in indexed or (action != "index" and all(p.exists() for p in self.outputs(rel))):
                job.skipped += 1
            else:
                job.todo.append(path)
        return job

    def body(self, path: Path, job: Job) -> dict | None:
        """A line's body for `path`, uploading its media; None (and the reason in `job.failed`) if it cannot."""
        rel, args = self.rel(path), self.args
        try:
            if args.action == "index" and path.suffix.lower() in TEXTS:
                return {"text": path.read_text(encoding="utf-8"), "metadata": {"path": rel}}
            if args.action == "index" and job.inline(path.stat().st_size):
                image = base64.b64encode(path.read_bytes()).decode()
                return {"image": image, "detect": args.detect, "metadata": {"path": rel}}
            with open(path, "rb") as media:
                file_id = self.upload(rel, media)
        except (OSError, UnicodeDecodeError, RuntimeError) as exc:
            job.failed[rel] = f"{type(exc).__name__}: {exc}" if not isinstance(exc, RuntimeError) else str(exc)
            return None
        job.uploaded.append(file_id)
        if args.action == "transcribe":
            body = {"model": args.model, "file": file_id, "response_format": args.format}
            return body | ({"language": args.language} if args.language else {})
        if args.action == "summarize":
            return {"file": file_id} | ({"model": args.model} if args.model else {})
        return {"file": file_id, "detect": args.detect, "metadata": {"path": rel}}

    def upload(self, name: str, data: Any, purpose: str = "user_data") -> str:
        reply = self.client._http.post("/files", data={"purpose": purpose}, files={"file": (name, data)})
        if reply.status_code >= 400:
            raise RuntimeError(f"upload refused ({reply.status_code}): {_message(reply)}")
        return reply.json()["id"]

    def ensure_collection(self) -> None:
        name = self.args.collection
        if self.client._http.get(f"/collections/{name}").status_code == 200:
            return
        if not self.args.model:
            raise SystemExit(f"error: no collection '{name}'; pass --model to create it")
        self.client.call("POST", "/collections", json={"name": name, "model": self.args.model})

    def submit(self, job: Job) -> dict:
        text = "".join(json.dumps(line) + "\n" for line in job.lines).encode()
        input_id = self.upload(f"bulk-{self.args.action}.jsonl", io.BytesIO(text), purpose="batch")
        metadata = {"bulk": self.args.action} | ({"window": "now"} if self.args.now else {})
        body = {"input_file_id": input_id, "endpoint": job.endpoint, "completion_window": "24h", "metadata": metadata}
        return self.client.call("POST", "/batches", json=body)

    def collect(self, job: Job, batch: dict) -> None:
        """Write each finished file's results; note each failed one's reason."""
        self.out.mkdir(parents=True, exist_ok=True)
        for key in ("output_file_id", "error_file_id"):
            if not batch.get(key):
                continue
            for raw in self.client.call("GET", f"/files/{batch[key]}/content").decode().splitlines():
                line = json.loads(raw)
                rel, response = line["custom_id"], line.get("response") or {}
                if response.get("status_code") == 200:
                    self.write(rel, response["body"])
                    job.done.append(rel)
                else:
                    body = response.get("body") or {}
                    error = body.get("error") if isinstance(body, dict) else None
                    job.failed[rel] = (error or line.get("error") or {}).get("message", "failed")
        answered = set(job.done) | set(job.failed)
        for line in job.lines:
            if line["custom_id"] not in answered:
                job.failed[line["custom_id"]] = f"not run: the batch is {batch['status']}"

    def write(self, rel: str, body: dict | str) -> None:
        if self.args.action == "index":
            with open(self.index_log(), "a", encoding="utf-8") as log:
                log.write(json.dumps({"path": rel, "ids": [item["id"] for item in body["data"]]}) + "\n")
            return
        targets = self.outputs(rel)
        targets[0].parent.mkdir(parents=True, exist_ok=True)
        if self.args.action == "transcribe":
            targets[0].write_text(body if isinstance(body, str) else json.dumps(body, indent=2), encoding="utf-8")
        else:
            assert isinstance(body, dict)
            targets[1].write_text(body["summary"] + "\n", encoding="utf-8")
            targets[0].write_text(body["srt"], encoding="utf-8")  # last: both exist means done

    def cleanup(self, job: Job) -> None:
        # The media copies on the server; the results are here now.
        with ThreadPoolExecutor(UPLOADS_AT_ONCE) as deletes:
            list(deletes.map(lambda file_id: self.client._http.delete(f"/files/{file_id}"), job.uploaded))


def _message(reply: httpx.Response) -> str:
    try:
        return reply.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return reply.text


def run(args: argparse.Namespace) -> int:
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)
    if not args.dir.is_dir():
        print(f"error: {args.dir} is not a folder", file=sys.stderr)
        return 2
    client = Client(args.url.rstrip("/").removesuffix("/v1"), args.api_key)
    bulk = Bulk(client, args)
    job = bulk.plan()
    if not job.todo:
        print(f"nothing to do: {job.skipped} files already done")
        return 0
    try:
        if args.action == "index":
            bulk.ensure_collection()
        uploads = ThreadPoolExecutor(UPLOADS_AT_ONCE)
        try:
            for path, body in zip(job.todo, uploads.map(lambda path: bulk.body(path, job), job.todo), strict=True):
                if body is not None:
                    job.lines.append({"custom_id": bulk.rel(path), "method": "POST", "url": job.endpoint, "body": body})
        finally:
            uploads.shutdown(cancel_futures=True)  # Ctrl-C: the uploads not started are not made
        batch = follow(client, bulk.submit(job)) if job.lines else None
        if batch is not None:
            bulk.collect(job, batch)
        bulk.cleanup(job)
    except httpx.HTTPError as exc:
        print(f"error: {args.url} did not answer: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # before the batch exists (while uploading): nothing ran, nothing to keep
        print("stopped before the batch was created; the uploads are deleted", file=sys.stderr)
        bulk.cleanup(job)
        return 130
    print(f"{args.action}: {len(job.done)} done, {job.skipped} skipped (done before), {len(job.failed)} failed")
    for rel, why in sorted(job.failed.items()):
        print(f"  failed {rel}: {why}")
    return 1 if job.failed else 0
