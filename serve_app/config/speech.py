"""The speech section: the WhisperX ASR deployment, the Diarizer beside it, and what they share.

Alignment and subtitles are optional parts of the one ASR deployment, configured inside
`speech:`: an aligner per language (languages without one still get segment timings) and
subtitle line limits. Diarization is its own deployment (`Diarizer`, its own replicas and GPU
share) running a pyannote pipeline beside the ASR; it is configured here too because it
serves the same requests, reads the same media limits, and without it asking for speakers
is a 400, not a silent omission. The media limits are here because both replicas decode media.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from serve_app.config.common import _Strict


class AlignerConfig(_Strict):
    model: str = Field(description="wav2vec2 CTC model name in the model store.")
    version: str


class DiarizationConfig(_Strict):
    served_name: str = Field(default="diarizer", description="The Diarizer's id in /v1/models and the registry.")
    model: str = Field(description="A local pyannote pipeline directory in the model store (config.yaml + weights).")
    version: str
    device: Literal["auto", "cpu", "cuda"] = Field(default="auto", description="auto: cuda when the replica sees it.")
    cpu_threads: int = Field(default=2, ge=1, description="torch threads on CPU.")
    max_speakers: int = Field(default=20, ge=1, description="Cap on num_speakers / max_speakers (400 above).")
    max_known_speakers: int = Field(default=4, ge=0, description="Most known speakers per request (OpenAI: 4).")
    max_reference_seconds: float = Field(
        default=10.0, gt=0, description="Longest known-speaker reference clip (OpenAI: 2-10 s); 400 above."
    )
    min_reference_seconds: float = Field(
        default=0.5, ge=0, description="Shortest reference clip that still gives an embedding; 400 below."
    )
    match_threshold: float = Field(
        default=0.5,
        ge=-1.0,
        le=1.0,
        description="Least cosine similarity of a reference to a diarized speaker for that speaker to take its name.",
    )


class SubtitleConfig(_Strict):
    max_line_chars: int = Field(default=42, ge=10, description="Longest subtitle line (Netflix-style 42).")
    max_lines: int = Field(default=2, ge=1, le=4, description="Lines per cue; longer text is split into more cues.")


class SpeechConfig(_Strict):
    served_name: str = Field(description="The id clients pass as `model` to /v1/audio/transcriptions.")
    aliases: list[str] = Field(
        default_factory=list, description="More accepted `model` ids, e.g. OpenAI's whisper-1 that SDK users send."
    )
    model: str = Field(description="CTranslate2 Whisper directory in the model store.")
    version: str
    device: Literal["auto", "cpu", "cuda"] = Field(default="auto", description="auto: cuda when the replica sees it.")
    compute_type: str | None = Field(
        default=None, description="CTranslate2 compute type; default int8 on CPU, float16 on GPU."
    )
    batch_size: int = Field(default=8, ge=1, description="VAD chunks decoded together by faster-whisper.")
    beam_size: int = Field(default=5, ge=1)
    max_new_tokens: int | None = Field(
        default=None,
        ge=1,
        le=440,
        description="Tokens decoded per VAD chunk (Whisper's own cap is 448 with the prompt); bounds hallucination.",
    )
    cpu_threads: int = Field(default=2, ge=1, description="CTranslate2 and torch threads on CPU.")
    lanes: int = Field(
        default=1,
        ge=1,
        le=16,
        description="Transcriptions one replica runs at once: CTranslate2 workers sharing the weights, each "
        "lane with its own decoding options (bulk work and concurrent users keep the cores busy).",
    )
    aligners: dict[str, AlignerConfig] = Field(
        default_factory=dict,
        description="wav2vec2 aligner per language code; languages without one get segment timings only.",
    )
    diarization: DiarizationConfig | None = Field(
        default=None, description="The Diarizer's pipeline; unset: requests asking for speakers are rejected with 400."
    )
    max_media_bytes: int = Field(default=200 << 20, ge=1024, description="Larger media (bytes or file) get 413.")
    max_audio_seconds: float = Field(
        default=4 * 3600.0, gt=0, description="Decoding stops (413) past this much audio: bounds decoded memory."
    )
    subtitles: SubtitleConfig = SubtitleConfig()
