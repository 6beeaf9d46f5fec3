"""A real Prometheus (Debian's `prometheus` package, installed by `make test`) for the metrics tests.

It scrapes the session Ray's per-node metrics exporter every second, and tests ask it in PromQL
through its HTTP API, as an operator's dashboards and alerts would.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import yaml

from serve_app.tools.launch import free_port


class Prometheus:
    def __init__(self, targets: list[str], workdir: Path, scrape_interval_s: float = 1.0):
        binary = shutil.which("prometheus")
        if binary is None:
            raise RuntimeError("prometheus is not installed: `make test` installs Debian's package (apt)")
        interval = f"{round(scrape_interval_s * 1000)}ms"  # Prometheus durations are integers with a unit
        config = {
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "scrape_configs": [{"job_name": "ray", "static_configs": [{"targets": targets}]}],
        }
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.url = f"http://127.0.0.1:{free_port()}"
        self._log = open(workdir / "prometheus.log", "w")  # open for the process's life: closed in stop()
        self._proc = subprocess.Popen(
            [
                binary,
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'tsdb'}",
                f"--web.listen-address={self.url.removeprefix('http://')}",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._http = httpx.Client(base_url=self.url, timeout=10)
        self._wait_ready(60)

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"prometheus exited: {Path(self._log.name).read_text()[-2000:]}")
            try:
                if self._http.get("/-/ready").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"prometheus not ready after {timeout_s}s")

    def query(self, promql: str) -> list[dict]:
        reply = self._http.get("/api/v1/query", params={"query": promql})
        body = reply.json()
        assert body.get("status") == "success", body
        return body["data"]["result"]

    def values(self, promql: str, by: tuple[str, ...]) -> dict[tuple[str, ...], float]:
        """An instant vector as {label values: value}."""
        return {tuple(r["metric"].get(k, "") for k in by): float(r["value"][1]) for r in self.query(promql)}

    def targets_up(self) -> bool:
        active = self._http.get("/api/v1/targets").json()["data"]["activeTargets"]
        return bool(active) and all(t["health"] == "up" for t in active)

    def wait_until(self, what: str, condition: Callable[[], object], timeout_s: float = 60) -> object:
        deadline = time.monotonic() + timeout_s
        last = None
        while time.monotonic() < deadline:
            last = condition()
            if last:
                return last
            time.sleep(0.5)
        raise AssertionError(f"not within {timeout_s}s: {what} (last: {last!r})")

    def stop(self) -> None:
        self._http.close()
        self._proc.terminate()
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
        self._log.close()
