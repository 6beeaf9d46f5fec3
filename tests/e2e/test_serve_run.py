"""The user's command: `python -m serve_app run configs/local.yaml` (what `make serve` runs).

Runs in its own process with its own Ray, like a user's terminal. The HTTP port differs from
configs/local.yaml so it cannot collide with a running server, and only the Ingress and the LLM are
started: the command is what is under test here; the whole of local.yaml is the session app, deployed
from the same file by Serve's own schema, and a unit test checks that it fits a 2-core machine's Ray.
"""

from __future__ import annotations

import signal
import subprocess
import time

import pytest
from openai import OpenAI

from serve_app.tools.launch import free_port, spawn
from tests import serve_harness
from tests.conftest import LOCAL_MODEL

pytestmark = [pytest.mark.slow, pytest.mark.heavy]


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_models):
    port = free_port()
    workdir = tmp_path_factory.mktemp("config")
    log = workdir / "serve.log"
    started = time.monotonic()
    with open(log, "w") as out:
        config = serve_harness.config_copy("local.yaml", workdir, edit=serve_harness.llm_only)
        proc = spawn(config, port=port, cwd=serve_harness.REPO, workdir=workdir, stdout=out)
    try:
        _wait_for_line(proc, log, "READY", timeout_s=300)
        yield proc, f"http://127.0.0.1:{port}", time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                proc.kill()


def _wait_for_line(proc: subprocess.Popen, log, marker: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if marker in log.read_text():
            return
        if proc.poll() is not None:
            pytest.fail(f"exited with {proc.returncode} before ready:\n{log.read_text()[-4000:]}")
        time.sleep(1)
    pytest.fail(f"not ready after {timeout_s}s:\n{log.read_text()[-4000:]}")


def test_serves_the_openai_api_once_ready(served):
    _, base_url, seconds_to_ready = served
    client = OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0, timeout=60)
    assert LOCAL_MODEL in [m.id for m in client.models.list().data]
    reply = client.chat.completions.create(
        model=LOCAL_MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=8
    )
    assert reply.choices[0].message.role == "assistant"
    print(f"ready {seconds_to_ready:.1f}s after start")


def test_ctrl_c_stops_cleanly(served):
    proc, _, _ = served
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=90) == 0
