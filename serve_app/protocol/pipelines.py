"""Pipeline contracts (extensions): video -> SRT -> summary, and image -> detections -> RAG answer.

A pipeline's result is its stages' results side by side (segments, detections, retrieved
items, the LLM's answer and usage) plus per-stage timings, so callers can see where the time
went. The streamed forms send what is known before the LLM starts as one first event, then
the answer's deltas, then a closing event. These compose the other domains' types, which is
why this module, and no other, imports from every other domain.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_serializer

from serve_app.protocol.common import INT64_MAX, INT64_MIN, ImageData, _Request, new_id, now
from serve_app.protocol.diarization import DiarizationOptions
from serve_app.protocol.knowledge import SearchHit
from serve_app.protocol.llm import FinishReason, Usage
from serve_app.protocol.speech import SpeechTimings, TranscriptionSegment
from serve_app.protocol.vision import Detection


class VideoSummaryOptions(DiarizationOptions):
    """The speaker fields (inherited) go to the Diarizer when `diarize` is set."""

    language: str | None = Field(default=None, description="ISO-639-1 code; None: detected.")
    prompt: str | None = Field(default=None, description="Initial prompt for the ASR decoder.")
    diarize: bool = Field(
        default=False, description="Speakers in the segments, the SRT, the transcript and the summary's prompt."
    )
    model: str | None = Field(default=None, description="LLM, adapter or alias id; None: the configured one.")
    max_summary_tokens: int | None = Field(default=None, ge=1, description="Per LLM call; None: config default.")
    chunk_tokens: int | None = Field(default=None, ge=32, description="Transcript tokens per map chunk.")


class VideoSummary(BaseModel):
    language: str
    duration: float
    srt: str
    segments: list[TranscriptionSegment]
    aligned: bool
    alignment_note: str | None = None
    summary: str
    summary_model: str
    usage: Usage | None = Field(default=None, description="Every LLM call of the summary, summed.")
    timings: SpeechTimings
    speakers: list[str] | None = Field(default=None, description="diarize: the speakers heard.")
    transcript: str | None = Field(
        default=None, description="diarize: the transcript as `SPEAKER: text` lines, one per change of speaker."
    )

    @model_serializer(mode="wrap")
    def _omit_unset_speakers(self, handler):
        # Without diarize the answer stays what it was before speakers existed (no null keys added).
        data = handler(self)
        return {k: v for k, v in data.items() if v is not None or k not in ("speakers", "transcript")}


class VideoSummaryEvent(BaseModel):
    """One streamed event: `transcript` (once), `summary.delta` (many), `done` (last)."""

    type: Literal["transcript", "summary.delta", "done"]
    language: str | None = None
    duration: float | None = None
    text: str | None = Field(default=None, description="transcript: the whole text.")
    segments: list[TranscriptionSegment] | None = None
    speakers: list[str] | None = Field(default=None, description="transcript, with diarize: the speakers heard.")
    delta: str | None = Field(default=None, description="summary.delta: the next piece of the summary.")
    summary: str | None = None
    srt: str | None = None
    usage: Usage | None = Field(default=None, description="done: every LLM call of the summary, summed.")
    timings: SpeechTimings | None = None

    @model_serializer(mode="wrap")
    def _omit_unset(self, handler):
        return {k: v for k, v in handler(self).items() if v is not None}


class ImageRAGRequest(_Request):
    """extension: image -> detections -> CLIP retrieval -> LLM answer."""

    image: ImageData
    question: str | None = Field(default=None, description="Default: the configured default question.")
    collection: str | None = Field(default=None, description="Default: the configured default collection.")
    top_k: int | None = Field(default=None, ge=1, le=100)
    crops: bool = Field(default=False, description="Also embed and search each detected object's crop.")
    conf: float = Field(default=0.25, ge=0.0, le=1.0)
    max_det: int = Field(default=20, ge=1, le=300)
    model: str | None = Field(default=None, description="LLM, adapter or alias id; default: the configured one.")
    max_tokens: int | None = Field(default=None, ge=1)
    seed: int | None = Field(default=None, ge=INT64_MIN, le=INT64_MAX)
    stream: bool = False


class RetrievedItem(SearchHit):
    source: str = Field(description="'image', or 'crop:<i>' for detection i's crop")


class ImageRAGTimings(BaseModel):
    detect_ms: float = 0.0
    embed_ms: float = 0.0
    retrieve_ms: float = 0.0
    generate_ms: float = 0.0
    total_ms: float = 0.0


class ImageRAGResponse(BaseModel):
    id: str = Field(default_factory=lambda: new_id("imgrag"))
    object: Literal["pipeline.image_rag"] = "pipeline.image_rag"
    created: int = Field(default_factory=now)
    model: str
    width: int
    height: int
    detections: list[Detection]
    retrieved: list[RetrievedItem]
    answer: str
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    timings: ImageRAGTimings


class ImageRAGContextEvent(BaseModel):
    """First streamed event: everything known before the LLM starts."""

    id: str
    object: Literal["pipeline.image_rag.context"] = "pipeline.image_rag.context"
    width: int
    height: int
    detections: list[Detection]
    retrieved: list[RetrievedItem]
    timings: ImageRAGTimings


class ImageRAGDeltaEvent(BaseModel):
    id: str
    object: Literal["pipeline.image_rag.delta"] = "pipeline.image_rag.delta"
    delta: str


class ImageRAGDoneEvent(BaseModel):
    id: str
    object: Literal["pipeline.image_rag.done"] = "pipeline.image_rag.done"
    answer: str
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    timings: ImageRAGTimings


ImageRAGEvent = ImageRAGContextEvent | ImageRAGDeltaEvent | ImageRAGDoneEvent
