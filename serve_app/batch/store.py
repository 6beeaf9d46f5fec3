"""The durable records of the Files and Batch APIs: files, batches and each batch line's result, in SQLite.

One process owns the file (the BatchRunner deployment, one replica, as GatewayState owns the gateway's),
so there is one writer and no lock across processes. A line's result is committed the moment it
arrives, keyed by (batch, line): a runner restarted mid-batch reruns only the lines with no row, and a
line that finishes twice (a retry racing a slow answer) is stored once. The output and error files
are written from these rows, in input order, when the batch finalizes.

`owner` is who may see a record: a key's id with the gateway on, None otherwise. Listing or reading
with owner None (no gateway, or the master key) sees every record.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from serve_app.protocol import Batch, FileObject

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, owner TEXT,
    purpose TEXT NOT NULL, created_at INTEGER NOT NULL, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS batches (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, owner TEXT,
    status TEXT NOT NULL, models TEXT NOT NULL, cancel INTEGER NOT NULL DEFAULT 0, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS lines (
    batch_id TEXT NOT NULL, idx INTEGER NOT NULL, failed INTEGER NOT NULL, line TEXT NOT NULL,
    input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL, PRIMARY KEY (batch_id, idx));
"""


@dataclass(frozen=True)
class LineResult:
    """One finished line: its output (or error) line as OpenAI writes it, and the tokens it used."""

    idx: int
    failed: bool
    line: str
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(frozen=True)
class LineTotals:
    completed: int
    failed: int
    input_tokens: int
    output_tokens: int


class BatchStore:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        # Ray Data results are committed from the runner's worker thread, records from its event loop.
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)

    def ping(self) -> None:
        with self._lock:
            self._db.execute("SELECT 1").fetchone()

    # files

    def add_file(self, file: FileObject, owner: str | None) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO files (id, owner, purpose, created_at, record) VALUES (?, ?, ?, ?, ?)",
                (file.id, owner, file.purpose, file.created_at, file.model_dump_json()),
            )

    def get_file(self, file_id: str, owner: str | None) -> FileObject | None:
        row = self._one("SELECT record FROM files WHERE id = ?" + _owned(owner), (file_id, *_args(owner)))
        return None if row is None else FileObject.model_validate_json(row[0])

    def list_files(
        self, owner: str | None, purpose: str | None, limit: int, descending: bool, after: str | None
    ) -> tuple[list[FileObject], bool]:
        where, args = "1 = 1" + _owned(owner), list(_args(owner))
        if purpose is not None:
            where, args = where + " AND purpose = ?", [*args, purpose]
        if after is not None:
            where += f" AND seq {'<' if descending else '>'} (SELECT seq FROM files WHERE id = ?)"
            args.append(after)
        order = "DESC" if descending else "ASC"
        rows = self._all(f"SELECT record FROM files WHERE {where} ORDER BY seq {order} LIMIT ?", (*args, limit + 1))
        return [FileObject.model_validate_json(r[0]) for r in rows[:limit]], len(rows) > limit

    def delete_file(self, file_id: str, owner: str | None) -> bool:
        with self._lock:
            cursor = self._db.execute("DELETE FROM files WHERE id = ?" + _owned(owner), (file_id, *_args(owner)))
        return cursor.rowcount > 0

    # batches

    def add_batch(self, batch: Batch, owner: str | None, models: list[str]) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO batches (id, owner, status, models, record) VALUES (?, ?, ?, ?, ?)",
                (batch.id, owner, batch.status, json.dumps(models), batch.model_dump_json()),
            )

    def save_batch(self, batch: Batch) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE batches SET status = ?, record = ? WHERE id = ?",
                (batch.status, batch.model_dump_json(), batch.id),
            )

    def get_batch(self, batch_id: str, owner: str | None = None) -> Batch | None:
        row = self._one("SELECT record FROM batches WHERE id = ?" + _owned(owner), (batch_id, *_args(owner)))
        return None if row is None else Batch.model_validate_json(row[0])

    def batch_models(self, batch_id: str) -> list[str]:
        row = self._one("SELECT models FROM batches WHERE id = ?", (batch_id,))
        return [] if row is None else json.loads(row[0])

    def list_batches(self, owner: str | None, limit: int, after: str | None) -> tuple[list[Batch], bool]:
        where, args = "1 = 1" + _owned(owner), list(_args(owner))
        if after is not None:
            where, args = where + " AND seq < (SELECT seq FROM batches WHERE id = ?)", [*args, after]
        rows = self._all(f"SELECT record FROM batches WHERE {where} ORDER BY seq DESC LIMIT ?", (*args, limit + 1))
        return [Batch.model_validate_json(r[0]) for r in rows[:limit]], len(rows) > limit

    def batch_owner(self, batch_id: str) -> str | None:
        row = self._one("SELECT owner FROM batches WHERE id = ?", (batch_id,))
        return None if row is None else row[0]

    def status_counts(self) -> dict[str, int]:
        return dict(self._all("SELECT status, COUNT(*) FROM batches GROUP BY status", ()))

    def unfinished(self) -> list[str]:
        """Batches a runner must carry on with, oldest first: what a restarted runner resumes."""
        rows = self._all(
            "SELECT id FROM batches WHERE status IN ('validating', 'in_progress', 'finalizing', 'cancelling') "
            "ORDER BY seq",
            (),
        )
        return [r[0] for r in rows]

    def request_cancel(self, batch_id: str) -> None:
        with self._lock:
            self._db.execute("UPDATE batches SET cancel = 1 WHERE id = ?", (batch_id,))

    def cancel_requested(self, batch_id: str) -> bool:
        row = self._one("SELECT cancel FROM batches WHERE id = ?", (batch_id,))
        return bool(row and row[0])

    # lines

    def add_results(self, batch_id: str, results: list[LineResult]) -> int:
        """Commit finished lines; a line already stored is kept as it was. Returns how many were new."""
        with self._lock:
            before = self._db.total_changes
            self._db.executemany(
                "INSERT OR IGNORE INTO lines VALUES (?, ?, ?, ?, ?, ?)",
                [(batch_id, r.idx, int(r.failed), r.line, r.input_tokens, r.output_tokens) for r in results],
            )
            return self._db.total_changes - before

    def done_lines(self, batch_id: str) -> set[int]:
        return {r[0] for r in self._all("SELECT idx FROM lines WHERE batch_id = ?", (batch_id,))}

    def totals(self, batch_id: str) -> LineTotals:
        row = self._one(
            "SELECT COALESCE(SUM(1 - failed), 0), COALESCE(SUM(failed), 0), COALESCE(SUM(input_tokens), 0), "
            "COALESCE(SUM(output_tokens), 0) FROM lines WHERE batch_id = ?",
            (batch_id,),
        )
        assert row is not None
        return LineTotals(*row)

    def result_lines(self, batch_id: str, failed: bool) -> Iterator[str]:
        """The batch's output (or error) lines in input order, fetched in pages so a big batch stays small."""
        last = -1
        while True:
            rows = self._all(
                "SELECT idx, line FROM lines WHERE batch_id = ? AND failed = ? AND idx > ? ORDER BY idx LIMIT 1000",
                (batch_id, int(failed), last),
            )
            if not rows:
                return
            for _, line in rows:
                yield line
            last = rows[-1][0]

    def _one(self, sql: str, args: tuple) -> tuple | None:
        with self._lock:
            return self._db.execute(sql, args).fetchone()

    def _all(self, sql: str, args: tuple) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()


def _owned(owner: str | None) -> str:
    return "" if owner is None else " AND owner = ?"


def _args(owner: str | None) -> tuple:
    return () if owner is None else (owner,)
