"""Builders must never reach for a model hub."""

from __future__ import annotations

import os


def force_offline_defaults() -> None:
    # An explicit user setting still wins.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("YOLO_OFFLINE", "1")
