"""The model store: manifests, verification failures, imports and the store CLI commands."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from serve_app.__main__ import main
from serve_app.common.model_store import (
    MANIFEST,
    ModelRef,
    ModelStoreError,
    fetch_from_hub,
    import_dir,
    model_dir,
    verify,
    write_manifest,
)

NAME, VERSION = "demo", "v1"


def _make_model(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text('{"layers": 2}')
    (path / "sub").mkdir()
    # Over 1 MiB so hashing crosses a chunk boundary.
    (path / "sub" / "weights.bin").write_bytes(bytes(range(256)) * 10_000)
    return path


@pytest.fixture()
def store(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    write_manifest(_make_model(model_dir(root, NAME, VERSION)), name=NAME, version=VERSION, source="test")
    return root


def test_manifest_round_trip(tmp_path: Path) -> None:
    path = _make_model(tmp_path / "m")
    manifest = write_manifest(path, name=NAME, version=VERSION, source="test")
    assert json.loads((path / MANIFEST).read_text()) == manifest
    assert manifest["name"] == NAME and manifest["version"] == VERSION and manifest["source"] == "test"
    assert set(manifest["files"]) == {"config.json", "sub/weights.bin"}
    expected = hashlib.sha256((path / "sub" / "weights.bin").read_bytes()).hexdigest()
    assert manifest["files"]["sub/weights.bin"] == expected
    # Rewriting must not start hashing the manifest itself.
    assert write_manifest(path, name=NAME, version=VERSION, source="test") == manifest


def test_verify_passes(store: Path) -> None:
    assert verify(store, NAME, VERSION) == ModelRef(NAME, VERSION, store / NAME / VERSION)


def test_tampered_file_is_named(store: Path) -> None:
    weights = model_dir(store, NAME, VERSION) / "sub" / "weights.bin"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelStoreError, match=r"demo/v1.*sub/weights\.bin.*sha256"):
        verify(store, NAME, VERSION)


def test_missing_file_is_named(store: Path) -> None:
    (model_dir(store, NAME, VERSION) / "config.json").unlink()
    with pytest.raises(ModelStoreError, match=r"demo/v1.*config\.json.*missing"):
        verify(store, NAME, VERSION)


def test_unlisted_file_is_named(store: Path) -> None:
    (model_dir(store, NAME, VERSION) / "sub" / "extra.txt").write_text("stray")
    with pytest.raises(ModelStoreError, match=r"demo/v1.*sub/extra\.txt.*not listed"):
        verify(store, NAME, VERSION)


def test_missing_manifest(store: Path) -> None:
    (model_dir(store, NAME, VERSION) / MANIFEST).unlink()
    with pytest.raises(ModelStoreError, match=r"demo/v1.*manifest\.json missing"):
        verify(store, NAME, VERSION)


def test_unreadable_manifest(store: Path) -> None:
    (model_dir(store, NAME, VERSION) / MANIFEST).write_text("{not json")
    with pytest.raises(ModelStoreError, match=r"demo/v1.*unreadable"):
        verify(store, NAME, VERSION)


def test_manifest_of_another_version(store: Path) -> None:
    model_dir(store, NAME, VERSION).rename(model_dir(store, NAME, "v2"))
    with pytest.raises(ModelStoreError, match=r"demo/v2.*describes demo/v1"):
        verify(store, NAME, "v2")


def test_missing_version_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(ModelStoreError, match=r"demo/v1 not found.*build-tiny-models.*fetch-model"):
        verify(tmp_path, NAME, VERSION)


@pytest.mark.parametrize("name", ["..", "a/b", ""])
def test_model_dir_rejects_path_tricks(tmp_path: Path, name: str) -> None:
    with pytest.raises(ModelStoreError):
        model_dir(tmp_path, name, VERSION)


def test_import_dir(tmp_path: Path) -> None:
    src = _make_model(tmp_path / "src")
    root = tmp_path / "store"
    ref = import_dir(src, root, NAME, VERSION, source="local:test")
    assert ref == verify(root, NAME, VERSION)
    assert json.loads((ref.path / MANIFEST).read_text())["source"] == "local:test"
    # Only the finished version is left: no staging directory beside it.
    assert [p.name for p in (root / NAME).iterdir()] == [VERSION]


def test_import_dir_refuses_overwrite(tmp_path: Path) -> None:
    src = _make_model(tmp_path / "src")
    root = tmp_path / "store"
    import_dir(src, root, NAME, VERSION, source="first")
    (src / "config.json").write_text('{"layers": 3}')
    with pytest.raises(ModelStoreError, match="already exists"):
        import_dir(src, root, NAME, VERSION, source="second")
    assert json.loads((model_dir(root, NAME, VERSION) / MANIFEST).read_text())["source"] == "first"
    assert verify(root, NAME, VERSION)
    assert [p.name for p in (root / NAME).iterdir()] == [VERSION]


def test_fetch_from_hub_pins_the_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No hub here: stand-ins check the calls made and what ends up in the store."""
    import huggingface_hub

    calls = []

    class FakeApi:
        def model_info(self, repo_id: str, revision: str | None = None) -> SimpleNamespace:
            return SimpleNamespace(sha="abc123")

    def fake_snapshot_download(repo_id: str, *, revision: str, local_dir: Path) -> str:
        calls.append((repo_id, revision))
        _make_model(Path(local_dir) / "files")
        (Path(local_dir) / ".cache" / "huggingface").mkdir(parents=True)
        (Path(local_dir) / ".cache" / "huggingface" / "x.metadata").write_text("bookkeeping")
        return str(local_dir)

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    root = tmp_path / "store"
    ref = fetch_from_hub("org/repo", root, NAME, VERSION, revision="main")
    assert calls == [("org/repo", "abc123")]
    manifest = json.loads((ref.path / MANIFEST).read_text())
    assert manifest["source"] == "hf://org/repo@abc123"
    assert set(manifest["files"]) == {"files/config.json", "files/sub/weights.bin"}
    assert verify(root, NAME, VERSION) == ref
    with pytest.raises(ModelStoreError, match="already exists"):
        fetch_from_hub("org/repo", root, NAME, VERSION)


def test_cli_import_and_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _make_model(tmp_path / "src")
    store = str(tmp_path / "store")
    assert main(["import-model", str(src), "--name", NAME, "--version", VERSION, "--store", store]) == 0
    assert main(["verify-model", NAME, VERSION, "--store", store]) == 0
    assert f"{NAME} {VERSION}" in capsys.readouterr().out


def test_cli_reports_store_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify-model", NAME, VERSION, "--store", str(tmp_path)]) == 1
    assert "error: model demo/v1 not found" in capsys.readouterr().err


def test_cli_and_store_do_not_import_heavy_libraries() -> None:
    code = (
        "import sys, serve_app.__main__, serve_app.common.model_store, serve_app.tools.tiny_models;"
        "heavy = {'torch', 'transformers', 'huggingface_hub', 'tokenizers'} & set(sys.modules);"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
