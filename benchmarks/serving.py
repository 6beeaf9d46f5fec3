"""The server a benchmark measures over HTTP: one already running, or configs/local.yaml started for the run."""

from __future__ import annotations

import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from serve_app.tools.launch import free_port, spawn
from tests import serve_harness


@contextmanager
def serving(config_path: str, base_url: str | None = None) -> Iterator[str]:
    """Yield `base_url` when given; else start `config_path` on a free port and stop it (Ctrl-C) afterwards."""
    if base_url:
        yield base_url
        return
    proc, started_url = _start(config_path)
    try:
        yield started_url
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=90)


def _start(config_path: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    workdir = Path(tempfile.mkdtemp())
    # Its own embedded Qdrant directory, so a `make serve` already running (holding data/qdrant) is no obstacle.
    config = serve_harness.config_copy(config_path, workdir)
    proc = spawn(config, port=port, cwd=serve_harness.REPO, workdir=workdir, stdout=subprocess.DEVNULL)
    base_url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    while time.monotonic() - started < 300 and proc.poll() is None:
        try:
            if httpx.get(f"{base_url}/ready", timeout=5).status_code == 200:
                print(f"server ready in {time.monotonic() - started:.1f}s")
                return proc, base_url
        except httpx.HTTPError:
            pass
        time.sleep(1)
    proc.kill()
    raise SystemExit(f"server not ready (exit code {proc.poll()}) after {time.monotonic() - started:.0f}s")
