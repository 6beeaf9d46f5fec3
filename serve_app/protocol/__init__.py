"""Protocol types shared by the HTTP ingress, the pipelines and the Python handle API.

Field names follow the OpenAI API reference. Anything that is not part of the
OpenAI API is marked "extension" in its description.
"""

from __future__ import annotations

import time
import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_serializer, model_validator


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def now() -> int:
    return int(time.time())


class _Request(BaseModel):
    # OpenAI clients send fields this server does not implement (logprobs, tools,
    # user, ...); ignoring unknown ones keeps every SDK version working.
    model_config = ConfigDict(extra="ignore")


class StreamOptions(_Request):
    include_usage: bool = False


class SamplingFields(_Request):
    """Sampling knobs common to chat and text completions."""

    model: str = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    n: Literal[1] = Field(default=1, description="Only n=1 is served.")
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    stream: bool = False
    stream_options: StreamOptions | None = None

    @field_validator("stop")
    @classmethod
    def _at_most_four_stops(cls, stop: str | list[str] | None) -> str | list[str] | None:
        stops = [stop] if isinstance(stop, str) else stop or []
        if len(stops) > 4:
            raise ValueError("at most 4 stop sequences are allowed")
        if any(s == "" for s in stops):
            raise ValueError("stop sequences must not be empty")
        return stop

    @property
    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    @property
    def include_usage_in_stream(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class TextContentPart(_Request):
    type: Literal["text"]
    text: str


class ChatMessage(_Request):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextContentPart] | None = None
    name: str | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class ChatCompletionRequest(SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _fold_max_completion_tokens(self) -> ChatCompletionRequest:
        # Newer SDKs send max_completion_tokens; older ones max_tokens. One field downstream.
        if self.max_completion_tokens is not None and self.max_tokens is None:
            self.max_tokens = self.max_completion_tokens
        return self


class CompletionRequest(SamplingFields):
    prompt: str | list[str] = Field(
        description="A string, or a one-element list of strings (n=1, no batching of prompts)."
    )
    echo: bool = False
    max_tokens: int | None = Field(default=16, ge=1)

    @field_validator("prompt")
    @classmethod
    def _single_prompt(cls, prompt: str | list[str]) -> str | list[str]:
        if isinstance(prompt, list) and len(prompt) != 1:
            raise ValueError("exactly one prompt per request is supported")
        return prompt

    @property
    def prompt_text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]


FinishReason = Literal["stop", "length"]


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int

    @classmethod
    def of(cls, prompt_tokens: int, completion_tokens: int) -> Usage:
        return cls(
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            total_tokens=prompt_tokens + completion_tokens,
        )


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: FinishReason
    logprobs: None = None


class ChatCompletion(BaseModel):
    id: str = Field(default_factory=lambda: new_id("chatcmpl"))
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=now)
    model: str
    choices: list[ChatChoice]
    usage: Usage


class ChunkDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None

    @model_serializer(mode="wrap")
    def _omit_unset(self, handler):
        # OpenAI sends only what a chunk carries: {"role": ...} first, then {"content": ...}, then {}.
        return {k: v for k, v in handler(self).items() if v is not None}


class ChatChunkChoice(BaseModel):
    index: int = 0
    delta: ChunkDelta
    finish_reason: FinishReason | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChatChunkChoice]
    usage: Usage | None = None


class CompletionChoice(BaseModel):
    index: int = 0
    text: str
    finish_reason: FinishReason | None = None
    logprobs: None = None


class Completion(BaseModel):
    """A text completion, or (with usage possibly None) one streamed chunk of it."""

    id: str = Field(default_factory=lambda: new_id("cmpl"))
    object: Literal["text_completion"] = "text_completion"
    created: int = Field(default_factory=now)
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = Field(default_factory=now)
    owned_by: str = "multimodel-serve"
    kind: str = Field(description="extension: llm, asr, detector, embedder, ...")
    engine: str = Field(description="extension: the engine serving the model on this replica")
    version: str = Field(description="extension: model store version")
    max_model_len: int | None = Field(default=None, description="extension: context window")
    embedding_dimension: int | None = Field(default=None, description="extension: embedding models' vector size")
    input_modalities: list[str] | None = Field(default=None, description="extension: e.g. ['text', 'image']")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


# ---------------------------------------------------------------------------
# Speech: /v1/audio/transcriptions (OpenAI shapes) and the video-summary pipeline
# ---------------------------------------------------------------------------

TranscriptionFormat = Literal["json", "text", "srt", "vtt", "verbose_json"]


class TranscriptionOptions(_Request):
    """What a caller may ask of the ASR deployment (the form fields of /v1/audio/transcriptions)."""

    model: str | None = Field(default=None, description="Served name or alias; None: the deployment's own.")
    language: str | None = Field(default=None, description="ISO-639-1 code; None: detected.")
    prompt: str | None = Field(default=None, description="Initial prompt for the decoder.")
    temperature: float = Field(default=0.0, ge=0.0, le=1.0)
    word_timestamps: bool = Field(default=True, description="extension: run word alignment when an aligner exists.")
    diarize: bool = Field(default=False, description="extension: attach speakers (needs a configured pipeline).")
    min_speakers: int | None = Field(default=None, ge=1, description="extension: diarization hint.")
    max_speakers: int | None = Field(default=None, ge=1, description="extension: diarization hint.")
    subtitles: Literal["srt", "vtt"] | None = Field(
        default=None, description="extension: also render subtitles (with the server's line limits)."
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
    diarized: bool = False
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


class VideoSummaryOptions(_Request):
    language: str | None = Field(default=None, description="ISO-639-1 code; None: detected.")
    prompt: str | None = Field(default=None, description="Initial prompt for the ASR decoder.")
    diarize: bool = False
    model: str | None = Field(default=None, description="LLM served name; None: the configured one.")
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
    timings: SpeechTimings


class VideoSummaryEvent(BaseModel):
    """One streamed event: `transcript` (once), `summary.delta` (many), `done` (last)."""

    type: Literal["transcript", "summary.delta", "done"]
    language: str | None = None
    duration: float | None = None
    text: str | None = Field(default=None, description="transcript: the whole text.")
    segments: list[TranscriptionSegment] | None = None
    delta: str | None = Field(default=None, description="summary.delta: the next piece of the summary.")
    summary: str | None = None
    srt: str | None = None
    timings: SpeechTimings | None = None

    @model_serializer(mode="wrap")
    def _omit_unset(self, handler):
        return {k: v for k, v in handler(self).items() if v is not None}


# ---------------------------------------------------------------------------
# Vision: detections, embeddings, the knowledge base (Qdrant) and the image-RAG pipeline
# ---------------------------------------------------------------------------
#
# Images travel as raw bytes (multipart uploads, notebooks) or as base64 strings, optionally
# `data:image/...;base64,` URLs (JSON). Deployments decode them with serve_app.images.

ImageData = str | bytes


class DetectionRequest(_Request):
    """extension (not an OpenAI API): object detection on one image."""

    model: str = Field(min_length=1)
    image: ImageData = Field(description="Encoded image: raw bytes, base64, or a data URL.")
    conf: float = Field(default=0.25, ge=0.0, le=1.0, description="Minimum score kept.")
    iou: float = Field(default=0.7, ge=0.0, le=1.0, description="NMS IoU threshold.")
    max_det: int = Field(default=300, ge=1, le=1000)
    classes: list[int | str] | None = Field(default=None, description="Keep only these class ids or labels.")


class Box(BaseModel):
    """Corners in pixels of the original image (xyxy)."""

    x1: float
    y1: float
    x2: float
    y2: float


class Detection(BaseModel):
    box: Box
    label: str
    class_id: int
    score: float


class DetectionResponse(BaseModel):
    id: str = Field(default_factory=lambda: new_id("det"))
    object: Literal["detection"] = "detection"
    created: int = Field(default_factory=now)
    model: str
    width: int
    height: int
    detections: list[Detection]
    batch_size: int = Field(description="extension: how many images shared this forward pass")


class ImageInput(_Request):
    """extension: an image where OpenAI allows only text (embeddings input, search queries)."""

    image: ImageData


EmbeddingInput = str | ImageInput


class EmbeddingRequest(_Request):
    model: str = Field(min_length=1)
    input: str | list[EmbeddingInput] = Field(
        description="A string or a list of strings; list items may also be {'image': base64} (extension)."
    )
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1, description="Only the model's own dimension is served.")

    @field_validator("input")
    @classmethod
    def _not_empty(cls, value: str | list[EmbeddingInput]) -> str | list[EmbeddingInput]:
        if isinstance(value, list) and not value:
            raise ValueError("input must not be an empty list")
        if isinstance(value, list) and len(value) > 2048:
            raise ValueError("at most 2048 inputs per request")
        return value

    @property
    def inputs(self) -> list[EmbeddingInput]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str = Field(description="Floats, or little-endian float32 bytes in base64.")


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage
    batch_size: int = Field(description="extension: the largest batch one of this request's inputs rode in")


CollectionName = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="Letters, digits, '_' and '-'; 1-64 chars.")


class CollectionCreate(_Request):
    """extension: a knowledge-base collection; its vector size and distance come from `model`."""

    name: str = CollectionName
    model: str = Field(min_length=1, description="Embedding model (served name) for its items and queries.")


class CollectionInfo(BaseModel):
    object: Literal["collection"] = "collection"
    name: str
    model: str
    dimension: int
    distance: str
    items_count: int


class CollectionList(BaseModel):
    object: Literal["list"] = "list"
    data: list[CollectionInfo]


class ItemCreate(_Request):
    """A text or an image (embedded by the collection's model), or a precomputed vector."""

    id: str | None = Field(default=None, min_length=1, max_length=256, description="Default: a new UUID.")
    text: str | None = None
    image: ImageData | None = Field(default=None, description="Needs a collection whose model embeds images.")
    vector: list[float] | None = Field(default=None, description="Stored as is; must have the collection's dimension.")
    metadata: dict = Field(default_factory=dict)
    detect: bool = Field(default=False, description="Store the image's detections in the payload.")

    @model_validator(mode="after")
    def _has_content(self) -> ItemCreate:
        if self.text is None and self.image is None and self.vector is None:
            raise ValueError("an item needs `text`, `image` or `vector`")
        if self.text is not None and self.image is not None:
            raise ValueError("an item is either `text` or `image`, not both")
        return self


class ItemsCreate(_Request):
    items: list[ItemCreate] = Field(min_length=1, max_length=1024)


class Item(BaseModel):
    object: Literal["collection.item"] = "collection.item"
    id: str
    kind: Literal["text", "image", "vector"]
    text: str | None = None
    metadata: dict = Field(default_factory=dict)
    detections: list[Detection] | None = None
    created: int


class ItemList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Item]
    next_offset: str | None = Field(default=None, description="Pass as `offset` for the next page.")


class SearchRequest(_Request):
    query: str | None = Field(default=None, description="Text to search by.")
    image: ImageData | None = Field(default=None, description="Or an image (collection model must embed images).")
    vector: list[float] | None = Field(default=None, description="Or a vector of the collection's dimension.")
    top_k: int = Field(default=5, ge=1, le=100)
    filter: dict[str, str | int | float | bool] | None = Field(
        default=None, description="Metadata fields that must equal these values."
    )

    @model_validator(mode="after")
    def _one_query(self) -> SearchRequest:
        given = [n for n in ("query", "image", "vector") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of `query`, `image` or `vector`")
        return self


class SearchHit(BaseModel):
    object: Literal["search.hit"] = "search.hit"
    item: Item
    score: float


class SearchResponse(BaseModel):
    object: Literal["list"] = "list"
    collection: str
    data: list[SearchHit]


class Deleted(BaseModel):
    id: str
    object: str
    deleted: bool = True


class ImageRAGRequest(_Request):
    """extension: image -> detections -> CLIP retrieval -> LLM answer."""

    image: ImageData
    question: str | None = Field(default=None, description="Default: the configured default question.")
    collection: str | None = Field(default=None, description="Default: the configured default collection.")
    top_k: int | None = Field(default=None, ge=1, le=100)
    crops: bool = Field(default=False, description="Also embed and search each detected object's crop.")
    conf: float = Field(default=0.25, ge=0.0, le=1.0)
    max_det: int = Field(default=20, ge=1, le=300)
    model: str | None = Field(default=None, description="LLM served name; default: the configured one.")
    max_tokens: int | None = Field(default=None, ge=1)
    seed: int | None = None
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
