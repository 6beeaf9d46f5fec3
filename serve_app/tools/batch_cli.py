"""`python -m serve_app batch ...`: a JSONL file through the Batch API of a running server, from a shell.

    python -m serve_app batch submit prompts.jsonl --endpoint /v1/chat/completions --wait
    python -m serve_app batch status batch_...
    python -m serve_app batch cancel batch_...

`submit` uploads the file, creates the batch and, with `--wait`, shows its progress (a bar on a
terminal, a line per change otherwise), then writes `<input>.output.jsonl` and `<input>.errors.jsonl`
beside the input. Ctrl-C while waiting cancels the batch and still writes what completed. It speaks
only the HTTP API, so it works against a remote server as well (`--url`, `--api-key`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ENDPOINTS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")
FINAL = {"completed", "failed", "expired", "cancelled"}
POLL_FIRST_S, POLL_MAX_S = 0.1, 1.0  # a batch's status is polled from every 0.1 s, growing to 1 s


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url", default=os.environ.get("SERVE_URL", "http://127.0.0.1:8000"), help="server (default: $SERVE_URL)"
    )
    parser.add_argument("--api-key", default=os.environ.get("OPENAI_API_KEY"), help="key (default: $OPENAI_API_KEY)")
    actions = parser.add_subparsers(dest="action", required=True)
    submit = actions.add_parser("submit", help="upload a JSONL file and create a batch")
    submit.add_argument("file", type=Path, help="input lines {custom_id, method, url, body}")
    submit.add_argument("--endpoint", choices=ENDPOINTS, required=True)
    submit.add_argument("--metadata", type=json.loads, help='JSON object, e.g. \'{"cache": "warm"}\'')
    submit.add_argument("--wait", action="store_true", help="show progress, then write the results beside the input")
    for name in ("status", "cancel"):
        actions.add_parser(name, help=f"{name} a batch").add_argument("batch_id")


class Client:
    def __init__(self, url: str, api_key: str | None):
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=url.rstrip("/") + "/v1", headers=headers, timeout=60)

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        reply = self._http.request(method, path, **kwargs)
        if reply.status_code >= 400:
            try:
                message = reply.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = reply.text
            raise SystemExit(f"error {reply.status_code}: {message}")
        return reply.json() if reply.headers.get("content-type", "").startswith("application/json") else reply.content


def submit(client: Client, args: argparse.Namespace) -> dict:
    with open(args.file, "rb") as source:
        uploaded = client.call("POST", "/files", data={"purpose": "batch"}, files={"file": (args.file.name, source)})
    body = {"input_file_id": uploaded["id"], "endpoint": args.endpoint, "completion_window": "24h"}
    if args.metadata:
        body["metadata"] = args.metadata
    return client.call("POST", "/batches", json=body)


def follow(client: Client, batch: dict, stream: Any = sys.stderr) -> dict:
    """Poll until the batch is done, showing progress; Ctrl-C cancels it and waits for what completed."""
    from tqdm import tqdm

    bar = tqdm(total=None, unit="line", file=stream, disable=not stream.isatty())
    last, wait = None, POLL_FIRST_S
    try:
        while batch["status"] not in FINAL:
            counts = batch["request_counts"]
            done = counts["completed"] + counts["failed"]
            bar.total = counts["total"] or None
            bar.update(done - bar.n)
            bar.set_postfix(status=batch["status"], failed=counts["failed"])
            if not stream.isatty() and (batch["status"], done) != last:
                print(
                    f"{batch['id']} {batch['status']}: {done}/{counts['total']} ({counts['failed']} failed)",
                    file=stream,
                )
                last = (batch["status"], done)
            time.sleep(wait)
            wait = min(POLL_MAX_S, wait * 1.5)  # a small batch is seen done at once, a long one costs little
            batch = client.call("GET", f"/batches/{batch['id']}")
    except KeyboardInterrupt:
        print(f"cancelling {batch['id']}; what completed is kept", file=stream)
        client.call("POST", f"/batches/{batch['id']}/cancel")
        while batch["status"] not in FINAL:
            time.sleep(0.5)
            batch = client.call("GET", f"/batches/{batch['id']}")
    bar.close()
    return batch


def save_results(client: Client, batch: dict, source: Path) -> list[Path]:
    written = []
    for key, suffix in (("output_file_id", ".output.jsonl"), ("error_file_id", ".errors.jsonl")):
        if batch.get(key):
            target = source.with_suffix(suffix)
            target.write_bytes(client.call("GET", f"/files/{batch[key]}/content"))
            written.append(target)
    return written


def run(args: argparse.Namespace) -> int:
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)
    client = Client(args.url, args.api_key)
    try:
        if args.action == "status":
            print(json.dumps(client.call("GET", f"/batches/{args.batch_id}"), indent=2))
            return 0
        if args.action == "cancel":
            print(json.dumps(client.call("POST", f"/batches/{args.batch_id}/cancel"), indent=2))
            return 0
        batch = submit(client, args)
        if not args.wait:
            print(json.dumps(batch, indent=2))
            return 0
        batch = follow(client, batch)
    except httpx.HTTPError as exc:
        print(f"error: {args.url} did not answer: {exc}", file=sys.stderr)
        return 1
    counts = batch["request_counts"]
    print(f"{batch['id']} {batch['status']}: {counts['completed']} completed, {counts['failed']} failed")
    for error in (batch.get("errors") or {}).get("data", []):
        print(f"  line {error.get('line')}: {error['code']}: {error['message']}")
    for path in save_results(client, batch, args.file):
        print(f"wrote {path}")
    return 0 if batch["status"] == "completed" else 1
