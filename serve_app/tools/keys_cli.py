"""`python -m serve_app keys ...`: the gateway's key admin routes from a shell, against a running server.

    export SERVE_MASTER_KEY=sk-...           # the server's master key
    python -m serve_app keys generate --alias ci --models tiny-qwen2 --rpm-limit 60 --duration 30d
    python -m serve_app keys list
    python -m serve_app keys info sk-...      # a key or its token
    python -m serve_app keys update sk-... --tpm-limit 10000
    python -m serve_app keys block sk-...  /  unblock sk-...  /  delete sk-...
    python -m serve_app keys usage [--key sk-...] [--since-s 3600]

Each prints the route's JSON answer; an error answer prints its message and exits 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

LIMIT_OPTIONS = {
    "--alias": ("key_alias", str),
    "--rpm-limit": ("rpm_limit", int),
    "--tpm-limit": ("tpm_limit", int),
    "--max-parallel-requests": ("max_parallel_requests", int),
    "--max-budget": ("max_budget", float),
    "--max-audio-seconds": ("max_audio_seconds", float),
    "--max-images": ("max_images", int),
    "--duration": ("duration", str),
    "--user-id": ("user_id", str),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url", default=os.environ.get("SERVE_URL", "http://127.0.0.1:8000"), help="server (default: $SERVE_URL)"
    )
    parser.add_argument(
        "--master-key-env", default="SERVE_MASTER_KEY", help="variable holding the master key (SERVE_MASTER_KEY)"
    )
    actions = parser.add_subparsers(dest="action", required=True)
    for name in ("generate", "update"):
        sub = actions.add_parser(name, help=f"{name} a key")
        if name == "update":
            sub.add_argument("key", help="the key or its token")
        for flag, (_, kind) in LIMIT_OPTIONS.items():
            sub.add_argument(flag, type=kind)
        sub.add_argument("--models", nargs="*", help="allowed models (none: every model)")
        sub.add_argument("--metadata", type=json.loads, help="JSON object, e.g. '{\"cache\": true}'")
    actions.add_parser("list", help="every key, in full")
    for name in ("info", "block", "unblock", "delete"):
        actions.add_parser(name, help=f"{name} a key").add_argument("key", help="the key or its token")
    usage = actions.add_parser("usage", help="the usage log (everyone's, or one key's)")
    usage.add_argument("--key")
    usage.add_argument("--since-s", type=float, help="only the last this many seconds")
    usage.add_argument("--limit", type=int, default=1000)


def _fields(args: argparse.Namespace) -> dict[str, Any]:
    fields = {field: getattr(args, flag[2:].replace("-", "_")) for flag, (field, _) in LIMIT_OPTIONS.items()}
    fields["models"], fields["metadata"] = args.models, args.metadata
    return {k: v for k, v in fields.items() if v is not None}


def request(args: argparse.Namespace) -> tuple[str, str, dict[str, Any]]:
    """(method, path, params or JSON body) for the action."""
    if args.action == "generate":
        return "POST", "/key/generate", _fields(args)
    if args.action == "update":
        return "POST", "/key/update", {"key": args.key, **_fields(args)}
    if args.action == "list":
        return "GET", "/key/list", {"return_full_object": "true"}
    if args.action == "info":
        return "GET", "/key/info", {"key": args.key}
    if args.action in ("block", "unblock"):
        return "POST", f"/key/{args.action}", {"key": args.key}
    if args.action == "delete":
        return "POST", "/key/delete", {"keys": [args.key]}
    params: dict[str, Any] = {"limit": args.limit}
    if args.key:
        params["key"] = args.key
    if args.since_s:
        params["start"] = time.time() - args.since_s
    return "GET", "/usage", params


def run(args: argparse.Namespace) -> int:
    import logging

    import httpx

    logging.getLogger("httpx").setLevel(logging.WARNING)  # the answer is the output, not a log of the request

    master = os.environ.get(args.master_key_env)
    if not master:
        print(f"error: export {args.master_key_env} (the server's master key)", file=sys.stderr)
        return 1
    method, path, payload = request(args)
    sent = {"params": payload} if method == "GET" else {"json": payload}
    try:
        reply = httpx.request(
            method, args.url.rstrip("/") + path, headers={"authorization": f"Bearer {master}"}, timeout=30, **sent
        )
    except httpx.HTTPError as exc:
        print(f"error: {args.url} did not answer: {exc}", file=sys.stderr)
        return 1
    try:
        body = reply.json()
    except ValueError:
        body = {"error": {"message": reply.text}}
    if reply.status_code >= 400:
        print(f"error {reply.status_code}: {body.get('error', {}).get('message', body)}", file=sys.stderr)
        return 1
    print(json.dumps(body, indent=2))
    return 0
