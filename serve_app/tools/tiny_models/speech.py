"""Tiny speech models: a multilingual Whisper in CTranslate2 format and a wav2vec2 CTC aligner.

Whisper keeps the real large-v3 token layout (50257 text ids with "" at 50256, then
<|endoftext|>, <|startoftranscript|>, 100 language tokens, task tokens, <|nospeech|>,
<|notimestamps|> and 1501 timestamps: 51866 ids, 128 mel bins), because CTranslate2 and
faster-whisper decide "multilingual" and find every special token from that layout.
Text tokens are lowercase pseudo-words so that the aligner's character vocabulary
covers what the random decoder emits, and alignment really runs.
"""

from __future__ import annotations

import json
import random
import shutil
import string
import tempfile
from pathlib import Path

from serve_app.tools.tiny_models.offline import force_offline_defaults

WHISPER_TEXT_TOKENS = 50257  # ids 0..50256; 50256 is ""
WHISPER_VOCAB_SIZE = 51866  # large-v3: text + specials + 1501 timestamps
WHISPER_MEL_BINS = 128
ALIGNER_LETTERS = string.ascii_lowercase + "'"
_SEED = 0


def _byte_level_chars() -> list[str]:
    from tokenizers.pre_tokenizers import ByteLevel

    return sorted(ByteLevel.alphabet())


def _whisper_text_vocab(rng: random.Random) -> dict[str, int]:
    """256 byte-level symbols, then pseudo-words ("Ġ" marks a leading space), then "" at 50256."""
    vocab = {ch: i for i, ch in enumerate(_byte_level_chars())}
    syllables = [c + v for c in "bcdfghklmnprstvz" for v in "aeiou"]
    while len(vocab) < WHISPER_TEXT_TOKENS - 1:
        word = "".join(rng.choice(syllables) for _ in range(rng.randint(1, 3)))
        token = ("Ġ" if rng.random() < 0.7 else "") + word
        vocab.setdefault(token, len(vocab))
    vocab[""] = WHISPER_TEXT_TOKENS - 1
    return vocab


def _whisper_special_tokens() -> list[str]:
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    languages = [f"<|{code}|>" for code in LANGUAGES]  # Whisper's own order: en, zh, de, ... yue
    return [
        "<|endoftext|>",
        "<|startoftranscript|>",
        *languages,
        "<|translate|>",
        "<|transcribe|>",
        "<|startoflm|>",
        "<|startofprev|>",
        "<|nospeech|>",
        "<|notimestamps|>",
    ]


def _whisper_tokenizer(rng: random.Random):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    tokenizer = Tokenizer(models.BPE(vocab=_whisper_text_vocab(rng), merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(_whisper_special_tokens())
    return tokenizer


def build_tiny_whisper(out: Path) -> None:
    """Build a random Whisper with transformers, then convert it to CTranslate2 int8."""
    force_offline_defaults()
    import ctranslate2.converters
    import torch
    import transformers
    from transformers import GenerationConfig, PreTrainedTokenizerFast, WhisperConfig, WhisperForConditionalGeneration

    rng = random.Random(_SEED)
    torch.manual_seed(_SEED)
    backend = _whisper_tokenizer(rng)
    specials = {tok: backend.token_to_id(tok) for tok in _whisper_special_tokens()}
    assert specials["<|endoftext|>"] == WHISPER_TEXT_TOKENS, "special tokens must follow the text ids"
    eot, sot, no_ts = specials["<|endoftext|>"], specials["<|startoftranscript|>"], specials["<|notimestamps|>"]

    config = WhisperConfig(
        vocab_size=WHISPER_VOCAB_SIZE,
        num_mel_bins=WHISPER_MEL_BINS,
        d_model=64,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=128,
        decoder_ffn_dim=128,
        max_source_positions=1500,
        max_target_positions=448,
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        decoder_start_token_id=sot,
    )
    model = WhisperForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        decoder_start_token_id=sot,
        eos_token_id=eot,
        pad_token_id=eot,
        no_timestamps_token_id=no_ts,
        suppress_tokens=[],
        begin_suppress_tokens=[220, eot],
        lang_to_id={tok: i for tok, i in specials.items() if tok[2:-2] in _language_codes()},
        task_to_id={"translate": specials["<|translate|>"], "transcribe": specials["<|transcribe|>"]},
        is_multilingual=True,
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<|endoftext|>", eos_token="<|endoftext|>", pad_token="<|endoftext|>"
    )
    features = transformers.WhisperFeatureExtractor(feature_size=WHISPER_MEL_BINS)

    with tempfile.TemporaryDirectory() as tmp:
        hf_dir = Path(tmp) / "hf"
        model.save_pretrained(hf_dir)
        tokenizer.save_pretrained(hf_dir)
        # transformers 5 writes the feature extractor only inside processor_config.json; WhisperX
        # reads preprocessor_config.json (else it falls back to 80 mels).
        features.save_pretrained(hf_dir)
        converter = ctranslate2.converters.TransformersConverter(
            str(hf_dir), copy_files=["tokenizer.json", "preprocessor_config.json"]
        )
        converter.convert(str(out), quantization="int8", force=True)


def _language_codes() -> set[str]:
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    return set(LANGUAGES)


def build_tiny_wav2vec2(out: Path) -> None:
    """A random wav2vec2 CTC model over lowercase letters, saved with its processor."""
    force_offline_defaults()
    import torch
    from transformers import (
        Wav2Vec2Config,
        Wav2Vec2CTCTokenizer,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForCTC,
        Wav2Vec2Processor,
    )

    torch.manual_seed(_SEED)
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4}
    vocab.update({ch: 5 + i for i, ch in enumerate(ALIGNER_LETTERS)})
    config = Wav2Vec2Config(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(32,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
        pad_token_id=0,
        do_stable_layer_norm=True,
        feat_extract_norm="layer",
    )
    model = Wav2Vec2ForCTC(config).eval()
    with tempfile.TemporaryDirectory() as tmp:
        vocab_file = Path(tmp) / "vocab.json"
        vocab_file.write_text(json.dumps(vocab))
        tokenizer = Wav2Vec2CTCTokenizer(str(vocab_file), word_delimiter_token="|")
        features = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, return_attention_mask=True)
        Wav2Vec2Processor(feature_extractor=features, tokenizer=tokenizer).save_pretrained(out)
    model.save_pretrained(out)
    shutil.rmtree(out / ".cache", ignore_errors=True)
