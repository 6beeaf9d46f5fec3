"""Tiny, deterministic checkpoints of the real architectures, built offline from code.

There is no model hub in CI, so each builder creates a randomly initialised model of
the production architecture and saves it in the library's normal format; serving code
then loads it through the same public loaders it uses for real weights. Outputs are
noise; the code paths are the production ones.

torch/transformers/tokenizers are imported inside the builders so that reading the
registry stays cheap.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from serve_app.common.model_store import (
    ModelRef,
    ModelStoreError,
    install,
    model_dir,
    staging_dir,
    verify,
)
from serve_app.tools.tiny_models.diarization import build_tiny_diarization
from serve_app.tools.tiny_models.llm import build_tiny_llm, build_tiny_lora
from serve_app.tools.tiny_models.speech import build_tiny_wav2vec2, build_tiny_whisper
from serve_app.tools.tiny_models.vision import build_tiny_clip, build_tiny_yolov8n

log = logging.getLogger(__name__)

# A builder writes one model version into a staging directory; it may read the store (an adapter needs its base).
Builder = Callable[[Path, Path], None]


def _alone(build: Callable[[Path], None], name: str | None = None) -> Builder:
    def builder(out_dir: Path, store: Path) -> None:
        build(out_dir)

    builder.__name__ = name or build.__name__  # the manifest's `source`
    return builder


def _tiny_lora(seed: int) -> Builder:
    def build(out_dir: Path, store: Path) -> None:
        build_tiny_lora(out_dir, model_dir(store, "tiny-qwen2", "v1"), "tiny-qwen2", seed)

    build.__name__ = f"build_tiny_lora_{seed}"
    return build


# (name, version) -> builder, in build order: an adapter after its base. tiny-qwen2 v2 is a second
# version (other seed: other tokenizer and weights), for blue-green and canary traffic.
TINY_MODELS: dict[tuple[str, str], Builder] = {
    ("tiny-qwen2", "v1"): _alone(build_tiny_llm),
    ("tiny-qwen2", "v2"): _alone(lambda out_dir: build_tiny_llm(out_dir, seed=1), "build_tiny_llm_seed_1"),
    ("tiny-qwen2-lora-a", "v1"): _tiny_lora(seed=11),
    ("tiny-qwen2-lora-b", "v1"): _tiny_lora(seed=12),
    ("tiny-whisper", "v1"): _alone(build_tiny_whisper),
    ("tiny-wav2vec2-en", "v1"): _alone(build_tiny_wav2vec2),
    ("tiny-diarization", "v1"): _alone(build_tiny_diarization),
    ("tiny-yolov8n", "v1"): _alone(build_tiny_yolov8n),
    ("tiny-clip", "v1"): _alone(build_tiny_clip),
}


def tiny_version(name: str) -> str:
    """The first version of a tiny model (what configs/local.yaml names, unless it says otherwise)."""
    return next(version for n, version in TINY_MODELS if n == name)


def _already_built(root: str | Path, name: str, version: str) -> ModelRef | None:
    if not model_dir(root, name, version).exists():
        return None
    try:
        return verify(root, name, version)
    except ModelStoreError as exc:
        log.warning("rebuilding %s/%s: %s", name, version, exc)
        return None


def build_all(root: str | Path, force: bool = False, names: list[str] | None = None) -> list[ModelRef]:
    """Build every registered tiny model (or those in `names`: `name` or `name/version`) that is missing
    or fails verification."""
    refs = []
    for (name, version), builder in TINY_MODELS.items():
        if names is not None and name not in names and f"{name}/{version}" not in names:
            continue
        ref = None if force else _already_built(root, name, version)
        if ref is None:
            started = time.perf_counter()
            staging = staging_dir(root, name, version)
            try:
                builder(staging, Path(root))
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            ref = install(staging, root, name, version, source=f"tiny:{builder.__name__}", replace=True)
            log.info("built %s/%s in %.1fs", name, version, time.perf_counter() - started)
        refs.append(ref)
    return refs
