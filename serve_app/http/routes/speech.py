"""Speech over HTTP: OpenAI's /v1/audio/transcriptions and /translations, and the video-summary pipeline.

Uploads are read here and passed as bytes through the handles; decoding happens in
the ASR (and Diarizer) replicas, never on the ingress event loop. With `diarize` (or
`response_format=diarized_json`) the Diarizer runs beside the ASR (serve_app/common/speakers.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from fastapi import File, Form, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from serve_app.common import speakers
from serve_app.config import VIDEO_SUMMARY_LLM
from serve_app.errors import InvalidRequest, parse_request
from serve_app.http.app import UPLOAD_API
from serve_app.http.metering import report_audio, report_tokens
from serve_app.http.routes.base import Backends
from serve_app.http.routing import post
from serve_app.http.sse import sse_response
from serve_app.protocol import (
    Transcript,
    Transcription,
    TranscriptionDiarized,
    TranscriptionDiarizedSegment,
    TranscriptionFormat,
    TranscriptionOptions,
    TranscriptionVerbose,
    TranslationFormat,
    VideoSummary,
    VideoSummaryOptions,
)
from serve_app.protocol.common import when

Granularity = Literal["word", "segment"]
# The schema's form of the check below: timestamp granularities only with verbose_json.
_GRANULARITIES_NEED_VERBOSE_JSON = {
    "requestBody": {
        "content": {
            "multipart/form-data": {
                "schema": {
                    "allOf": [
                        when(
                            "timestamp_granularities[]",
                            {"type": "array", "minItems": 1},
                            "response_format",
                            {"const": "verbose_json"},
                        )  # fmt: skip
                    ]
                }
            }
        }
    }
}


def render_transcription(
    transcript: Transcript, response_format: TranscriptionFormat, granularities: list[Granularity]
) -> Response:
    if response_format == "json":
        return JSONResponse(Transcription(text=transcript.text).model_dump())
    if response_format == "text":
        return PlainTextResponse(transcript.text + "\n")
    if response_format in ("srt", "vtt"):
        return PlainTextResponse(transcript.subtitles or "")
    if response_format == "diarized_json":
        return JSONResponse(diarized(transcript).model_dump())
    want_words = "word" in granularities
    want_segments = "segment" in granularities or not granularities
    segments = [s if want_words else s.model_copy(update={"words": None}) for s in transcript.segments]
    verbose = TranscriptionVerbose(
        language=transcript.language_name or transcript.language,
        duration=transcript.duration,
        text=transcript.text,
        segments=segments if want_segments else None,
        words=transcript.words() if want_words else None,
        aligned=transcript.aligned,
        alignment_note=transcript.alignment_note,
    )
    return JSONResponse(verbose.model_dump(exclude_none=True))


def diarized(transcript: Transcript) -> TranscriptionDiarized:
    """OpenAI's diarized_json: one entry per segment with its speaker (a segment no turn reached: "unknown")."""
    return TranscriptionDiarized(
        duration=transcript.duration,
        text=transcript.text,
        segments=[
            TranscriptionDiarizedSegment(
                id=f"seg_{s.id}", start=s.start, end=s.end, text=s.text, speaker=s.speaker or "unknown"
            )
            for s in transcript.segments
        ],
    )


def transcription_options(
    response_format: str, granularities: Sequence[str], *, diarize: bool, translate: bool = False, **fields: Any
) -> dict[str, Any]:
    """The ASR's options for a transcription or translation, as the HTTP routes and media batch lines
    (serve_app.http.routes.batch_media) both read them from the request's fields."""
    if granularities and response_format != "verbose_json":
        raise InvalidRequest(
            "timestamp_granularities requires response_format=verbose_json.", param="timestamp_granularities"
        )
    subtitles = _subtitles(response_format)
    return {
        **fields,
        "word_timestamps": "word" in granularities or subtitles is not None,
        "subtitles": subtitles,
        "diarize": (diarize or response_format == "diarized_json") and not translate,
        "task": "translate" if translate else "transcribe",
    }


def _subtitles(response_format: str) -> Literal["srt", "vtt"] | None:
    """The subtitle format a response format asks the ASR to render; subtitles also need aligned
    words, which tighten segment times."""
    if response_format == "srt":
        return "srt"
    return "vtt" if response_format == "vtt" else None


class SpeechRoutes(Backends):
    @post("/v1/audio/transcriptions", dependencies=UPLOAD_API, openapi_extra=_GRANULARITIES_NEED_VERBOSE_JSON)
    async def audio_transcriptions(
        self,
        file: Annotated[UploadFile, File()],
        model: Annotated[str, Form(min_length=1)],
        language: Annotated[str | None, Form()] = None,
        prompt: Annotated[str | None, Form()] = None,
        temperature: Annotated[float, Form(ge=0.0, le=1.0)] = 0.0,
        response_format: Annotated[TranscriptionFormat, Form()] = "json",
        # The openai SDK sends lists as repeated `name[]` fields.
        timestamp_granularities: Annotated[list[Granularity] | None, Form(alias="timestamp_granularities[]")] = None,
        diarize: Annotated[bool, Form(description="extension: attach speakers (implied by diarized_json)")] = False,
        num_speakers: Annotated[int | None, Form(ge=1, description="extension: exactly this many speakers")] = None,
        min_speakers: Annotated[int | None, Form(ge=1, description="extension: at least this many speakers")] = None,
        max_speakers: Annotated[int | None, Form(ge=1, description="extension: at most this many speakers")] = None,
        known_speaker_names: Annotated[list[str] | None, Form(alias="known_speaker_names[]")] = None,
        known_speaker_references: Annotated[list[str] | None, Form(alias="known_speaker_references[]")] = None,
    ) -> Any:
        granularities = timestamp_granularities or []
        options = transcription_options(
            response_format,
            granularities,
            diarize=diarize,
            model=model,
            language=language or None,
            prompt=prompt or None,
            temperature=temperature,
            num_speakers=num_speakers,
            min_speakers=min_speakers,
            max_speakers=max_speakers,
            known_speaker_names=known_speaker_names or [],
            known_speaker_references=known_speaker_references or [],
        )
        with self._online.serving(model):  # media batch lines to this model wait for it
            transcript = await self.transcribe(await file.read(), options)
        return render_transcription(transcript, response_format, granularities)

    @post("/v1/audio/translations", dependencies=UPLOAD_API)
    async def audio_translations(
        self,
        file: Annotated[UploadFile, File()],
        model: Annotated[str, Form(min_length=1)],
        prompt: Annotated[str | None, Form()] = None,
        temperature: Annotated[float, Form(ge=0.0, le=1.0)] = 0.0,
        response_format: Annotated[TranslationFormat, Form()] = "json",  # diarized_json is for transcriptions
    ) -> Any:
        # OpenAI's translations: English text from speech in any language, the transcription's shapes.
        options = transcription_options(
            response_format,
            [],
            diarize=False,
            translate=True,
            model=model,
            prompt=prompt or None,
            temperature=temperature,
        )
        with self._online.serving(model):
            transcript = await self.transcribe(await file.read(), options)
        return render_transcription(transcript, response_format, [])

    @post("/v1/pipelines/video-summary", response_model=VideoSummary, dependencies=UPLOAD_API)
    async def video_summary(
        self,
        file: Annotated[UploadFile, File()],
        stream: Annotated[bool, Form()] = False,
        language: Annotated[str | None, Form()] = None,
        prompt: Annotated[str | None, Form()] = None,
        diarize: Annotated[bool, Form(description="speaker-attributed transcript, SRT and summary")] = False,
        num_speakers: Annotated[int | None, Form(ge=1)] = None,
        min_speakers: Annotated[int | None, Form(ge=1)] = None,
        max_speakers: Annotated[int | None, Form(ge=1)] = None,
        model: Annotated[str | None, Form(description="LLM for the summary")] = None,
        max_summary_tokens: Annotated[int | None, Form(ge=1)] = None,
        chunk_tokens: Annotated[int | None, Form(ge=32)] = None,
    ) -> Any:
        options = parse_request(
            VideoSummaryOptions,
            {
                "language": language or None,
                "prompt": prompt or None,
                "diarize": diarize,
                "num_speakers": num_speakers,
                "min_speakers": min_speakers,
                "max_speakers": max_speakers,
                "model": model or None,
                "max_summary_tokens": max_summary_tokens,
                "chunk_tokens": chunk_tokens,
            },
        )
        media = await file.read()
        if stream:
            return await sse_response(self.video_summary_stream(media, options))
        return await self.summarize_video(media, options)

    # The same calls for Python callers of the app handle.

    # With a gateway, each reports what it used for the caller's key (a no-op for app-handle callers).

    async def transcribe(self, media: bytes | str, options: TranscriptionOptions | dict) -> Transcript:
        """A transcript; with `diarize`, the Diarizer's speakers on its segments and words."""
        options = parse_request(TranscriptionOptions, options)
        asr = self._model("asr", options.model or "")
        diarizer = self._diarizer() if options.diarize else None
        transcript = await speakers.transcribe(asr, diarizer, media, options)
        report_audio(transcript.duration)
        return transcript

    def _diarizer(self, param: str = "diarize") -> Any:
        served = self._models.served("diarizer")
        if not served:
            raise InvalidRequest(
                "Speaker diarization is not served here (no speech.diarization in the config); "
                "drop diarize and diarized_json.",
                param=param,
            )
        return next(iter(served.values()))

    async def summarize_video(self, media: bytes | str, options: VideoSummaryOptions | dict | None = None) -> Any:
        options = self._pipeline_llm(parse_request(VideoSummaryOptions, options or {}), VIDEO_SUMMARY_LLM)
        if options.diarize:
            self._diarizer()
        result = await self._service("video_summary").summarize.remote(media, options)
        report_audio(result.duration)
        report_tokens(result.usage, result.summary_model)
        return result

    async def video_summary_stream(self, media: bytes | str, options: VideoSummaryOptions | dict | None = None):
        options = self._pipeline_llm(parse_request(VideoSummaryOptions, options or {}), VIDEO_SUMMARY_LLM)
        if options.diarize:
            self._diarizer()
        async for event in self._service("video_summary", stream=True).summarize_stream.remote(media, options):
            report_audio(event.duration)
            report_tokens(event.usage)
            yield event
