"""Protocol types shared by the HTTP ingress, the pipelines and the Python handle API.

Field names follow the OpenAI API reference. Anything that is not part of the
OpenAI API is marked "extension" in its description.

Each type is defined once, so the ingress, the pipelines and a notebook calling a
handle agree on every shape. One module per domain (common, llm, speech, vision,
knowledge, pipelines) keeps a change to one domain's shapes in one file; import
from this package, not from the modules, so a type can move between them without
breaking a caller. The modules depend one way only, common <- llm, speech,
vision <- knowledge <- pipelines, and import neither torch nor ray
(tests/unit/test_import_rules.py): the ingress and the unit tests load these
without a model stack.
"""

from serve_app.protocol.common import (
    AliasTargetCard,
    Deleted,
    ErrorDetail,
    ErrorResponse,
    ImageData,
    ModelCard,
    ModelList,
    new_id,
    now,
)
from serve_app.protocol.knowledge import (
    CollectionCreate,
    CollectionInfo,
    CollectionList,
    CollectionName,
    Item,
    ItemCreate,
    ItemList,
    ItemsCreate,
    SearchHit,
    SearchRequest,
    SearchResponse,
)
from serve_app.protocol.llm import (
    AssistantMessage,
    ChatChoice,
    ChatChunkChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatMessage,
    ChunkDelta,
    Completion,
    CompletionChoice,
    CompletionRequest,
    FinishReason,
    SamplingFields,
    StreamOptions,
    TextContentPart,
    Usage,
)
from serve_app.protocol.pipelines import (
    ImageRAGContextEvent,
    ImageRAGDeltaEvent,
    ImageRAGDoneEvent,
    ImageRAGEvent,
    ImageRAGRequest,
    ImageRAGResponse,
    ImageRAGTimings,
    RetrievedItem,
    VideoSummary,
    VideoSummaryEvent,
    VideoSummaryOptions,
)
from serve_app.protocol.speech import (
    SpeechTimings,
    Transcript,
    Transcription,
    TranscriptionFormat,
    TranscriptionOptions,
    TranscriptionSegment,
    TranscriptionVerbose,
    TranscriptionWord,
)
from serve_app.protocol.vision import (
    Box,
    Detection,
    DetectionRequest,
    DetectionResponse,
    Embedding,
    EmbeddingInput,
    EmbeddingRequest,
    EmbeddingResponse,
    EmbeddingUsage,
    ImageInput,
)

__all__ = [
    # common
    "Deleted",
    "ErrorDetail",
    "ErrorResponse",
    "ImageData",
    "AliasTargetCard",
    "ModelCard",
    "ModelList",
    "new_id",
    "now",
    # llm
    "AssistantMessage",
    "ChatChoice",
    "ChatChunkChoice",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatCompletionRequest",
    "ChatMessage",
    "ChunkDelta",
    "Completion",
    "CompletionChoice",
    "CompletionRequest",
    "FinishReason",
    "SamplingFields",
    "StreamOptions",
    "TextContentPart",
    "Usage",
    # speech
    "SpeechTimings",
    "Transcript",
    "Transcription",
    "TranscriptionFormat",
    "TranscriptionOptions",
    "TranscriptionSegment",
    "TranscriptionVerbose",
    "TranscriptionWord",
    # vision
    "Box",
    "Detection",
    "DetectionRequest",
    "DetectionResponse",
    "Embedding",
    "EmbeddingInput",
    "EmbeddingRequest",
    "EmbeddingResponse",
    "EmbeddingUsage",
    "ImageInput",
    # knowledge
    "CollectionCreate",
    "CollectionInfo",
    "CollectionList",
    "CollectionName",
    "Item",
    "ItemCreate",
    "ItemList",
    "ItemsCreate",
    "SearchHit",
    "SearchRequest",
    "SearchResponse",
    # pipelines
    "ImageRAGContextEvent",
    "ImageRAGDeltaEvent",
    "ImageRAGDoneEvent",
    "ImageRAGEvent",
    "ImageRAGRequest",
    "ImageRAGResponse",
    "ImageRAGTimings",
    "RetrievedItem",
    "VideoSummary",
    "VideoSummaryEvent",
    "VideoSummaryOptions",
]
