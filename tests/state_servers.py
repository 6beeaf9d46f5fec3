"""A real redis-server and PostgreSQL (Debian's packages, installed by `make test`) for the gateway's server mode.

Each runs from a tmp dir on a free port on 127.0.0.1 and is stopped by the test that started it.
PostgreSQL refuses to run as root: as root, initdb and pg_ctl run as the `postgres` user the Debian
package creates. `stop()` then `start()` again is a server restart, which the fault tests use.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from serve_app.tools.launch import free_port


def postgres_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def missing() -> str | None:
    """Why the servers cannot run here, or None."""
    absent = [n for n in ("redis-server",) if shutil.which(n) is None]
    absent += [n for n in ("initdb", "pg_ctl") if postgres_bin(n) is None]
    if absent:
        return f"{absent} not installed: `make test-tools` installs redis-server and postgresql (apt, as root)"
    return None


def _wait(what: str, ready, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.1)
    raise TimeoutError(f"{what} not ready after {timeout_s}s")


class Redis:
    def __init__(self, workdir: Path):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._workdir = workdir
        self._proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        import redis

        self._proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            cwd=self._workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)

        def pong() -> bool:
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return False

        _wait("redis-server", pong)

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=30)
            self._proc = None


class Postgres:
    def __init__(self):
        # Its own dir under /tmp, not pytest's tmp_path: that one is private to root, and as root the
        # server runs as `postgres`, which must reach its data dir.
        workdir = Path(tempfile.mkdtemp(prefix="gateway-pg-"))
        self.workdir = workdir
        self.port = free_port()
        self.dsn = f"postgresql://gateway@127.0.0.1:{self.port}/postgres"
        self._data = workdir / "pgdata"
        self._log = workdir / "postgres.log"
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            self._as_user = ["runuser", "-u", "postgres", "--"]
            shutil.chown(workdir, "postgres")
        subprocess.run(
            [*self._as_user, postgres_bin("initdb"), "-D", str(self._data), "-A", "trust", "-U", "gateway"],
            check=True,
            capture_output=True,
        )
        self.start()

    def _pg_ctl(self, *args: str) -> None:
        subprocess.run(
            [*self._as_user, postgres_bin("pg_ctl"), "-D", str(self._data), *args],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self._data} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._pg_ctl("-o", options, "-l", str(self._log), "-w", "start")

    def stop(self) -> None:
        self._pg_ctl("-m", "fast", "-w", "stop")

    def remove(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)
