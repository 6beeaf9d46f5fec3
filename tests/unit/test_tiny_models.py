"""The tiny Qwen2 checkpoint loads through transformers' normal loaders and rebuilds byte for byte."""

from __future__ import annotations

import json
import shutil
import string
from pathlib import Path

import pytest
import transformers

from serve_app.common.model_store import MANIFEST, ModelRef, verify, write_manifest
from serve_app.tools.tiny_models import build_all, build_tiny_llm, tiny_version

NAME = "tiny-qwen2"
VERSION = tiny_version(NAME)
ONLY = [f"{NAME}/{VERSION}"]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("store")
    build_all(root, names=ONLY)
    return root


@pytest.fixture(scope="module")
def llm_dir(store: Path) -> Path:
    return verify(store, NAME, VERSION).path


@pytest.fixture(scope="module")
def tokenizer(llm_dir: Path):
    return transformers.AutoTokenizer.from_pretrained(llm_dir)


@pytest.fixture(scope="module")
def model(llm_dir: Path):
    return transformers.AutoModelForCausalLM.from_pretrained(llm_dir)


def test_build_all_skips_valid_versions(store: Path) -> None:
    manifest = (store / NAME / VERSION / MANIFEST).read_bytes()
    assert build_all(store, names=ONLY) == [ModelRef(NAME, VERSION, store / NAME / VERSION)]
    assert (store / NAME / VERSION / MANIFEST).read_bytes() == manifest
    assert sorted(p.name for p in (store / NAME).iterdir()) == [VERSION]


def test_special_tokens(tokenizer) -> None:
    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.pad_token == "<|endoftext|>"
    assert 900 <= len(tokenizer) <= 1024


def test_chat_template(tokenizer) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there!"}]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert prompt == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi there!<|im_end|>\n<|im_start|>assistant\n"
    )
    ids = tokenizer(prompt)["input_ids"]
    assert ids.count(tokenizer.convert_tokens_to_ids("<|im_start|>")) == 3


@pytest.mark.parametrize(
    "text",
    [string.printable, "Hello, world! 12345 The quick brown fox.", "  spaces\n\ttabs\r\nend", "caf\u00e9 \u65e5\u672c"],
)
def test_encode_decode_round_trip(tokenizer, text: str) -> None:
    ids = tokenizer(text)["input_ids"]
    assert tokenizer.decode(ids) == text


def test_generate(tokenizer, model) -> None:
    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Say something."}],
        add_generation_prompt=True,
        return_dict=True,
        return_tensors="pt",
    )
    prompt_len = inputs["input_ids"].shape[1]
    out = model.generate(**inputs, max_new_tokens=8, min_new_tokens=8, do_sample=False)
    assert out.shape == (1, prompt_len + 8)
    assert isinstance(tokenizer.decode(out[0, prompt_len:]), str)


def _manifest_files(version_dir: Path) -> dict[str, str]:
    return json.loads((version_dir / MANIFEST).read_text())["files"]


def test_rebuild_is_byte_identical(llm_dir: Path, tmp_path: Path) -> None:
    build_tiny_llm(tmp_path)
    rebuilt = write_manifest(tmp_path, name=NAME, version=VERSION, source="tiny:build_tiny_llm")
    assert rebuilt["files"] == _manifest_files(llm_dir)


def test_build_all_replaces_a_corrupt_version(llm_dir: Path, tmp_path: Path) -> None:
    corrupt = tmp_path / NAME / VERSION
    shutil.copytree(llm_dir, corrupt)
    (corrupt / "config.json").write_text("{}")
    [ref] = build_all(tmp_path, names=ONLY)
    assert ref.path == corrupt
    assert verify(tmp_path, NAME, VERSION) == ref
    assert _manifest_files(corrupt) == _manifest_files(llm_dir)
    assert sorted(p.name for p in (tmp_path / NAME).iterdir()) == [VERSION]
