"""The batch section: OpenAI's Files and Batch APIs, run on Ray Data over the served replicas.

Where files live (a directory every node can read on a cluster), how big an upload and a batch may
be, and how politely a batch shares the replicas with online traffic: how many of its requests may
be in flight per model, and how long a line waits while online requests keep that model busy.
"""

from __future__ import annotations

from datetime import time
from pathlib import Path
from typing import Literal

from pydantic import Field

from serve_app.config.common import _Strict


class BatchConfig(_Strict):
    files_dir: Path | None = Field(
        default=None,
        description="Where uploaded and result files are stored, by id; unset: <data_dir>/files. "
        "On a cluster, a directory every node can read.",
    )
    max_file_bytes: int = Field(
        default=200 << 20, ge=1024, description="Larger uploads to /v1/files with purpose `batch` get 413."
    )
    max_media_bytes: int = Field(
        default=2 << 30,
        ge=1024,
        description="Larger uploads to /v1/files with purpose `user_data` (media for batch lines) get 413.",
    )
    window: str | None = Field(
        default=None,
        pattern=r"^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d$",
        description="`HH:MM-HH:MM`, the server's local time (may wrap midnight, e.g. `22:00-06:00`): batches "
        "run only inside it, and wait in_progress outside it, unless created with `metadata.window: now`. "
        "Unset: always.",
    )
    max_lines: int = Field(default=50_000, ge=1, description="A batch's input file may hold this many lines.")
    max_in_flight: int = Field(
        default=12,
        ge=1,
        description="A batch's requests in flight at once, per model deployment: keep it under the model's "
        "max_ongoing_requests, so online requests find a free slot instead of queueing behind the batch.",
    )
    max_media_in_flight: int = Field(
        default=4,
        ge=1,
        description="Media lines (transcriptions, summaries, detections, image RAG) in flight at once, per model: "
        "each is long work, a few keep a model busy, and more would only queue ahead of online users.",
    )
    tasks: int = Field(
        default=2,
        ge=1,
        description="Ray Data tasks calling the handles at once; each keeps its share of max_in_flight.",
    )
    lines_per_task: int = Field(default=16, ge=1, description="Lines handed to a task at once (Ray Data's batch_size).")
    online_first: bool = Field(
        default=True, description="Hold a batch's next line for a model while online requests to it are running."
    )
    online_first_scope: Literal["model", "all"] = Field(
        default="model",
        description="Whose online requests hold a line back: its own model's, or any model's (models that share "
        "one pool of cores or one GPU, where a batch line on one slows the online requests of another).",
    )
    online_grace_s: float = Field(
        default=0.5, ge=0.0, description="A model counts as busy this long after its last online request ended."
    )
    max_online_wait_s: float = Field(
        default=10.0, ge=0.0, description="A line waits at most this long for online traffic, so no batch starves."
    )
    line_attempts: int = Field(
        default=3, ge=1, description="Tries per line when a replica is lost or its queue is full."
    )
    completion_window_s: float = Field(
        default=86_400.0, gt=0.0, description="`24h`: a batch not done by then is expired."
    )
    poll_interval_s: float = Field(default=1.0, gt=0.0, description="How often the runner looks for work.")

    @property
    def max_upload_bytes(self) -> int:
        """What /v1/files lets through before it knows the purpose (the form comes with the body)."""
        return max(self.max_file_bytes, self.max_media_bytes)

    def upload_limit(self, purpose: str) -> int:
        return self.max_file_bytes if purpose == "batch" else self.max_media_bytes

    def in_window(self, now: time) -> bool:
        """Whether `now` (local wall-clock time) is inside `window`; always True without one."""
        if self.window is None:
            return True
        start, end = (time.fromisoformat(part) for part in self.window.split("-"))
        if start <= end:
            return start <= now < end
        return now >= start or now < end  # it wraps midnight

    def files_path(self, data_dir: Path) -> Path:
        return (self.files_dir or data_dir / "files").expanduser().resolve()
