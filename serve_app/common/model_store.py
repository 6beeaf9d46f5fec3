"""Versioned model store: ``<root>/<name>/<version>/`` plus a sha256 manifest.

Deployments call ``verify`` before loading, so a truncated download, a hand-edited
file or a stray extra file is caught at start-up with the file named, instead of
surfacing later as a confusing loader error.

Versions are assembled in a sibling ``<version>.tmp-<pid>`` directory and renamed
into place only once complete, so a crash never leaves a half-written version.

Only the standard library is imported here: the CLI and the controller read the
store without paying for torch/transformers.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

MANIFEST = "manifest.json"
_CHUNK = 1 << 20
_BUILD_HINT = (
    "build the tiny offline models with `python -m serve_app build-tiny-models`, "
    "or fetch real weights with `python -m serve_app fetch-model REPO_ID --name NAME --version VERSION`"
)


class ModelStoreError(Exception):
    """A model version is missing, incomplete or does not match its manifest."""


@dataclass(frozen=True)
class ModelRef:
    name: str
    version: str
    path: Path


def model_dir(root: str | Path, name: str, version: str) -> Path:
    for part in (name, version):
        # Names come from configs and the CLI; refuse anything that would step outside the store.
        if not part or part in (".", "..") or "/" in part or "\\" in part:
            raise ModelStoreError(f"invalid model name/version component {part!r}")
    return Path(root) / name / version


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _files(path: Path) -> list[str]:
    """Relative POSIX paths of every file under ``path`` except the manifest itself."""
    return sorted(
        p.relative_to(path).as_posix()
        for p in path.rglob("*")
        if p.is_file() and p.relative_to(path).as_posix() != MANIFEST
    )


def write_manifest(path: Path, *, name: str, version: str, source: str) -> dict:
    path = Path(path)
    manifest = {
        "name": name,
        "version": version,
        "source": source,
        "files": {rel: _sha256(path / rel) for rel in _files(path)},
    }
    (path / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def _read_manifest(path: Path, label: str) -> dict:
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise ModelStoreError(f"model {label}: {MANIFEST} missing in {path}; re-import or rebuild it")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelStoreError(f"model {label}: {MANIFEST} unreadable in {path}: {exc}") from exc
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise ModelStoreError(f"model {label}: {MANIFEST} in {path} has no 'files' mapping")
    return manifest


def _fail_on(label: str, path: Path, rels: list[str], problem: str) -> None:
    if rels:
        raise ModelStoreError(f"model {label}: file(s) {', '.join(rels)} in {path} {problem}")


def verify(root: str | Path, name: str, version: str) -> ModelRef:
    path = model_dir(root, name, version)
    label = f"{name}/{version}"
    if not path.is_dir():
        raise ModelStoreError(f"model {label} not found at {path}; {_BUILD_HINT}")
    manifest = _read_manifest(path, label)
    if (manifest.get("name"), manifest.get("version")) != (name, version):
        raise ModelStoreError(
            f"model {label}: manifest in {path} describes "
            f"{manifest.get('name')}/{manifest.get('version')}; the directory was moved or copied"
        )
    listed: dict[str, str] = manifest["files"]
    present = set(_files(path))
    _fail_on(label, path, sorted(listed.keys() - present), "listed in the manifest but missing")
    _fail_on(label, path, sorted(present - listed.keys()), "present but not listed in the manifest")
    changed = [rel for rel, sha in sorted(listed.items()) if _sha256(path / rel) != sha]
    _fail_on(label, path, changed, "do not match their manifest sha256")
    return ModelRef(name=name, version=version, path=path)


def staging_dir(root: str | Path, name: str, version: str) -> Path:
    """An empty ``<version>.tmp-<pid>`` directory next to where the version will live.

    Same filesystem as the destination, so ``install`` is a rename, not a copy.
    """
    final = model_dir(root, name, version)
    staging = final.with_name(f"{version}.tmp-{os.getpid()}")
    if staging.exists():
        shutil.rmtree(staging)  # left by an earlier crashed run that had our pid
    staging.mkdir(parents=True)
    return staging


def install(
    staging: Path, root: str | Path, name: str, version: str, *, source: str, replace: bool = False
) -> ModelRef:
    """Write the manifest of a complete ``staging`` directory and rename it into place.

    ``staging`` is consumed: moved into the store, or deleted if that fails.
    """
    final = model_dir(root, name, version)
    try:
        if not replace:
            _refuse_existing(root, name, version)
        write_manifest(staging, name=name, version=version, source=source)
        if final.exists():
            # Move the old version aside first: a rename cannot replace a non-empty directory.
            old = final.with_name(f"{version}.old-{os.getpid()}")
            final.rename(old)
            staging.rename(final)
            shutil.rmtree(old)
        else:
            staging.rename(final)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return ModelRef(name=name, version=version, path=final)


def _refuse_existing(root: str | Path, name: str, version: str) -> None:
    final = model_dir(root, name, version)
    if final.exists():
        raise ModelStoreError(f"model {name}/{version} already exists at {final}; refusing to overwrite it")


def import_dir(src: Path, root: str | Path, name: str, version: str, *, source: str) -> ModelRef:
    src = Path(src)
    if not src.is_dir():
        raise ModelStoreError(f"model {name}/{version}: source {src} is not a directory")
    _refuse_existing(root, name, version)
    staging = staging_dir(root, name, version)
    try:
        # Follow symlinks (the hub cache is made of them) so the store holds real files.
        shutil.copytree(src, staging, dirs_exist_ok=True, symlinks=False)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return install(staging, root, name, version, source=source)


def fetch_from_hub(repo_id: str, root: str | Path, name: str, version: str, *, revision: str | None = None) -> ModelRef:
    from huggingface_hub import HfApi, snapshot_download

    _refuse_existing(root, name, version)
    # Resolve the branch/tag to a commit first so the manifest records exactly what was downloaded.
    commit = HfApi().model_info(repo_id, revision=revision).sha
    staging = staging_dir(root, name, version)
    try:
        snapshot_download(repo_id, revision=commit, local_dir=staging)
        # huggingface_hub keeps its download bookkeeping inside local_dir; it is not part of the model.
        shutil.rmtree(staging / ".cache", ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return install(staging, root, name, version, source=f"hf://{repo_id}@{commit}")
