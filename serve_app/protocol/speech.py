"""Speech contracts: `/v1/audio/transcriptions` in OpenAI's shapes, and the transcript behind them.

The ASR deployment returns one `Transcript` to every caller (HTTP, pipelines, notebooks),
and each OpenAI `response_format` (json, text, srt, vtt, verbose_json, diarized_json) is shaped
from it at the edge. Speakers come from the Diarizer, run beside the ASR and assigned to the
transcript's segments and words afterwards. Only the subtitle text is rendered inside the
deployment, when asked for, because its line limits are the server's config. Word timings,
speakers and per-stage timings are extensions, marked as such.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from serve_app.protocol.diarization import DiarizationOptions

TranslationFormat = Literal["json", "text", "srt", "vtt", "verbose_json"]
TranscriptionFormat = Literal["json", "text", "srt", "vtt", "verbose_json", "diarized_json"]


class TranscriptionOptions(DiarizationOptions):
    """What a caller may ask of a transcription (the form fields of /v1/audio/transcriptions).

    The speaker fields (inherited) are the Diarizer's: the app handle's `transcribe` runs it beside
    the ASR when `diarize` is set; the ASR deployment alone does not diarize.
    """

    model: str | None = Field(default=None, description="Served name or alias; None: the deployment's own.")
    language: str | None = Field(default=None, description="ISO-639-1 code; None: detected.")
    prompt: str | None = Field(default=None, description="Initial prompt for the decoder.")
    temperature: float = Field(default=0.0, ge=0.0, le=1.0)
    word_timestamps: bool = Field(default=True, description="extension: run word alignment when an aligner exists.")
    diarize: bool = Field(default=False, description="extension: attach speakers (needs a served Diarizer).")
    subtitles: Literal["srt", "vtt"] | None = Field(
        default=None, description="extension: also render subtitles (with the server's line limits)."
    )
    task: Literal["transcribe", "translate"] = Field(
        default="transcribe", description="translate: into English, Whisper's translate task (/v1/audio/translations)."
    )


class TranscriptionWord(BaseModel):
    word: str
    start: float
    end: float
    speaker: str | None = Field(default=None, description="extension: speaker label when diarized.")


class TranscriptionSegment(BaseModel):
    id: int
    seek: int = 0
    start: float
    end: float
    text: str
    tokens: list[int] = Field(default_factory=list)
    temperature: float = 0.0
    avg_logprob: float = 0.0
    compression_ratio: float = 0.0
    no_speech_prob: float = 0.0
    words: list[TranscriptionWord] | None = Field(
        default=None, description="extension: this segment's aligned words (None when alignment did not run)."
    )
    speaker: str | None = Field(default=None, description="extension: speaker label when diarized.")


class SpeechTimings(BaseModel):
    """extension: wall seconds per stage."""

    decode: float = 0.0
    transcribe: float = 0.0
    align: float = 0.0
    diarize: float = 0.0
    summarise: float = 0.0
    total: float = 0.0
    llm_calls: int = Field(default=0, description="LLM calls made for the summary (>1: map-reduce).")
    chunks: int = Field(default=0, description="Transcript chunks summarised in the map step (0: no chunking).")


class Transcript(BaseModel):
    """What the ASR deployment returns to Python callers; every HTTP format is rendered from it."""

    model: str
    language: str = Field(description="ISO-639-1 code, given or detected.")
    language_name: str | None = Field(
        default=None, description="The language's English name, which OpenAI's verbose_json reports."
    )
    duration: float = Field(description="Seconds of decoded audio.")
    text: str
    segments: list[TranscriptionSegment]
    aligned: bool = Field(description="Word timings present (an aligner exists for the language).")
    alignment_note: str | None = Field(default=None, description="Why words are missing, when they are.")
    diarized: bool = Field(default=False, description="Speakers are attributed (the Diarizer ran).")
    speakers: list[str] | None = Field(default=None, description="extension: the speakers heard, when diarized.")
    subtitles: str | None = Field(default=None, description="SRT or WebVTT text, when asked for.")
    timings: SpeechTimings = SpeechTimings()

    def words(self) -> list[TranscriptionWord]:
        return [w for s in self.segments for w in s.words or []]


class Transcription(BaseModel):
    """response_format=json."""

    text: str


class TranscriptionVerbose(BaseModel):
    """response_format=verbose_json."""

    task: Literal["transcribe"] = "transcribe"
    language: str = Field(description="The language's name, e.g. 'english', as OpenAI reports it.")
    duration: float
    text: str
    segments: list[TranscriptionSegment] | None = None
    words: list[TranscriptionWord] | None = None
    aligned: bool = Field(description="extension: word timings came from forced alignment.")
    alignment_note: str | None = Field(default=None, description="extension: why words are missing.")


class TranscriptionDiarizedSegment(BaseModel):
    """One segment of response_format=diarized_json (OpenAI's shape)."""

    type: Literal["transcript.text.segment"] = "transcript.text.segment"
    id: str
    start: float
    end: float
    text: str
    speaker: str


class TranscriptionDiarized(BaseModel):
    """response_format=diarized_json."""

    task: Literal["transcribe"] = "transcribe"
    duration: float
    text: str
    segments: list[TranscriptionDiarizedSegment]
