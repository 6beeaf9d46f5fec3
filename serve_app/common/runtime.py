"""Offline-by-default process environment, with every cache inside the data dir.

Called at the top of each deployment's __init__, before heavy imports: the
libraries read these variables once, at import. `setdefault` leaves anything an
operator exported (e.g. HF_HUB_OFFLINE=0 to fetch a model) untouched.
"""

from __future__ import annotations

import os
from pathlib import Path

_OFFLINE = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "YOLO_OFFLINE": "1",
    "PYANNOTE_METRICS_ENABLED": "0",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
    "TOKENIZERS_PARALLELISM": "false",
}

_CACHE_DIRS = {
    "HF_HOME": "hf",
    "TORCH_HOME": "torch",
    "YOLO_CONFIG_DIR": "ultralytics",
    "MPLCONFIGDIR": "matplotlib",
    "NLTK_DATA": "nltk",
    "VLLM_CACHE_ROOT": "vllm",
}


def configure_offline_runtime(data_dir: Path) -> None:
    for name, value in _OFFLINE.items():
        os.environ.setdefault(name, value)
    for name, sub in _CACHE_DIRS.items():
        path = Path(os.environ.setdefault(name, str(data_dir / "cache" / sub)))
        path.mkdir(parents=True, exist_ok=True)
