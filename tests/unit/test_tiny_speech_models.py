"""The tiny Whisper and aligner load through faster-whisper's and WhisperX's normal loaders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from serve_app.common.model_store import verify
from serve_app.tools.tiny_models import build_all, tiny_version
from serve_app.tools.tiny_models.speech import WHISPER_MEL_BINS, WHISPER_VOCAB_SIZE
from tests import speech_media

WHISPER, ALIGNER = "tiny-whisper", "tiny-wav2vec2-en"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("speech-store")
    build_all(root, names=[WHISPER, ALIGNER])
    return root


def test_whisper_has_the_large_v3_multilingual_layout(store: Path) -> None:
    from faster_whisper import WhisperModel
    from faster_whisper.tokenizer import Tokenizer

    path = verify(store, WHISPER, tiny_version(WHISPER)).path
    assert json.loads((path / "preprocessor_config.json").read_text())["feature_size"] == WHISPER_MEL_BINS
    assert len(json.loads((path / "vocabulary.json").read_text())) == WHISPER_VOCAB_SIZE
    model = WhisperModel(str(path), device="cpu", compute_type="int8", local_files_only=True)
    assert model.model.is_multilingual and model.model.n_mels == WHISPER_MEL_BINS
    tokenizer = Tokenizer(model.hf_tokenizer, True, task="transcribe", language="de")
    assert tokenizer.eot == 50257 and tokenizer.sot == 50258
    assert tokenizer.no_timestamps == 50364 and tokenizer.timestamp_begin == 50365
    assert tokenizer.language == tokenizer.sot + 1 + 2  # en, zh, de: Whisper's own language order
    segments, info = model.transcribe(speech_media.modulated_tone(2.0), language="en", beam_size=1, max_new_tokens=8)
    list(segments)
    assert info.language == "en"


def test_aligner_loads_through_whisperx(store: Path) -> None:
    import whisperx

    path = verify(store, ALIGNER, tiny_version(ALIGNER)).path
    model, metadata = whisperx.load_align_model("en", "cpu", model_name=str(path))
    assert metadata["type"] == "huggingface"
    assert set("abcxyz") <= set(metadata["dictionary"])
