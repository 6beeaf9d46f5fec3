"""video -> audio -> WhisperX transcript -> SRT -> LLM summary, over deployment handles only.

    pipeline = serve.get_deployment_handle("VideoSummary", app_name="default")
    result = await pipeline.summarize.remote(video_bytes_or_path, {"language": "en"})   # a protocol VideoSummary
    async for event in pipeline.options(stream=True).summarize_stream.remote(video, {}):  # VideoSummaryEvent
        ...

With `diarize`, the Diarizer runs beside the ASR (serve_app/common/speakers.py): the segments and
the SRT carry speakers, and the summary is asked of `SPEAKER: text` lines, so it knows who said what.

A transcript longer than the LLM's context is summarised map-reduce: split into chunks
that fit (counted with the LLM's own tokenizer, against its real context length),
summarise each, then combine the partial summaries (again in chunks if they still do
not fit). Only the last call streams.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from ray import serve
from ray.serve.handle import DeploymentHandle

from serve_app.common import metrics, speakers
from serve_app.common.model_registry import ModelRegistry
from serve_app.config import VideoSummaryConfig
from serve_app.errors import InvalidRequest, parse_request
from serve_app.protocol import (
    ChatCompletionRequest,
    SpeechTimings,
    StreamOptions,
    Transcript,
    TranscriptionOptions,
    Usage,
    VideoSummaryEvent,
    VideoSummaryOptions,
)
from serve_app.protocol import VideoSummary as VideoSummaryResult

# Tokens the chat template adds around the messages (role markers, newlines), plus slack.
_TEMPLATE_MARGIN = 32
PIPELINE = "video_summary"  # its label in the pipeline metrics


@dataclass
class SummaryPlan:
    """Which LLM, its context, tokens per call and transcript tokens per chunk."""

    llm_model: str
    max_model_len: int
    max_tokens: int
    chunk_tokens: int


class Summariser:
    """Map-reduce summaries against one LLM handle, sized by its card and tokenizer; `usage` sums every call's."""

    def __init__(
        self,
        llm: DeploymentHandle,
        config: VideoSummaryConfig,
        options: VideoSummaryOptions,
        llm_stream: DeploymentHandle | None = None,  # `llm` with options(stream=True), made once by the caller
    ):
        self._llm = llm
        self._llm_stream = llm_stream or llm.options(stream=True)
        self._config = config
        self._options = options
        self.calls = 0
        self.chunks = 0
        self.usage = Usage.of(0, 0)

    async def plan(self) -> SummaryPlan:
        card = await self._llm.card.remote()
        max_tokens = self._options.max_summary_tokens or self._config.max_summary_tokens
        templates = (self._config.chunk_prompt, self._config.combine_prompt, self._config.summary_prompt)
        prompt_overhead = max(await self._llm.count_tokens.remote([self._config.system_prompt + t for t in templates]))
        room = card.max_model_len - max_tokens - prompt_overhead - _TEMPLATE_MARGIN
        if room < 32:
            raise InvalidRequest(
                f"The LLM's context ({card.max_model_len} tokens) leaves no room for a transcript next to "
                f"{max_tokens} summary tokens; lower max_summary_tokens.",
                param="max_summary_tokens",
            )
        wanted = self._options.chunk_tokens or self._config.chunk_tokens or room
        return SummaryPlan(
            llm_model=self._options.model or self._config.llm_model or card.id,
            max_model_len=card.max_model_len,
            max_tokens=max_tokens,
            chunk_tokens=min(wanted, room),
        )

    async def final_prompt(self, plan: SummaryPlan, pieces: list[str], separator: str = " ") -> str:
        """The prompt of the last (streamable) call: the whole transcript when it fits, else
        map rounds over chunks until the partial summaries fit one combine prompt. Speaker turns
        are joined one per line (`separator`), so the LLM sees who said what."""
        text = separator.join(pieces)
        if await self._count(text) <= plan.chunk_tokens:
            return _fill(self._config.summary_prompt, "transcript", text)
        template, slot = self._config.chunk_prompt, "transcript"
        for round_ in range(self._config.max_reduce_rounds):
            chunks = await self._chunk(pieces, plan.chunk_tokens, separator)
            separator = " "
            if round_ == 0:
                self.chunks = len(chunks)
            partials = await asyncio.gather(*(self._complete(plan, _fill(template, slot, c)) for c in chunks))
            pieces = [f"- {p.strip()}" for p in partials]
            joined = "\n".join(pieces)
            if await self._count(joined) <= plan.chunk_tokens:
                return _fill(self._config.combine_prompt, "summaries", joined)
            template, slot = self._config.combine_prompt, "summaries"
        raise InvalidRequest("The transcript is too long to summarise within max_reduce_rounds.", param="file")

    async def complete(self, plan: SummaryPlan, prompt: str) -> str:
        return await self._complete(plan, prompt)

    async def stream(self, plan: SummaryPlan, prompt: str) -> AsyncIterator[str]:
        self.calls += 1
        request = self._request(plan, prompt, stream=True, stream_options=StreamOptions(include_usage=True))
        async for chunk in self._llm_stream.chat_stream.remote(request):
            self._add(chunk.usage)
            if chunk.choices and chunk.choices[0].delta.content:
                yield chunk.choices[0].delta.content

    async def _complete(self, plan: SummaryPlan, prompt: str) -> str:
        self.calls += 1
        reply = await self._llm.chat.remote(self._request(plan, prompt))
        self._add(reply.usage)
        return reply.choices[0].message.content

    def _add(self, usage: Usage | None) -> None:
        if usage is not None:
            self.usage = Usage.of(
                self.usage.prompt_tokens + usage.prompt_tokens, self.usage.completion_tokens + usage.completion_tokens
            )

    def _request(self, plan: SummaryPlan, prompt: str, **fields) -> ChatCompletionRequest:
        return ChatCompletionRequest(
            **fields,
            model=plan.llm_model,
            messages=[
                {"role": "system", "content": self._config.system_prompt},
                {"role": "user", "content": prompt},
            ],
            max_tokens=plan.max_tokens,
            temperature=self._config.temperature,
        )

    async def _count(self, text: str) -> int:
        return await self._llm.count_tokens.remote(text)

    async def _chunk(self, pieces: list[str], budget: int, separator: str = " ") -> list[str]:
        """Pack pieces (segment texts) greedily into chunks of at most `budget` tokens."""
        counts = await self._llm.count_tokens.remote(pieces)  # one call for every segment
        fitted: list[tuple[str, int]] = []
        for piece, count in zip(pieces, counts, strict=True):
            fitted.extend(await self._split(piece, count, budget))
        chunks: list[str] = []
        current: list[str] = []
        used = 0
        for piece, count in fitted:
            if current and used + count + 1 > budget:
                chunks.append(separator.join(current))
                current, used = [], 0
            current.append(piece)
            used += count + 1  # the joining space (or newline) may cost a token
        if current:
            chunks.append(separator.join(current))
        return chunks

    async def _split(self, piece: str, count: int, budget: int) -> list[tuple[str, int]]:
        words = piece.split()
        if count <= budget or len(words) <= 1:
            return [(piece, min(count, budget))] if words else []
        half = len(words) // 2
        left, right = " ".join(words[:half]), " ".join(words[half:])
        left_count, right_count = await asyncio.gather(self._count(left), self._count(right))
        return [*await self._split(left, left_count, budget), *await self._split(right, right_count, budget)]


def _fill(template: str, slot: str, text: str) -> str:
    # str.replace, not str.format: a prompt in the YAML may contain other braces.
    return template.replace("{" + slot + "}", text)


async def transcribe(
    asr: DeploymentHandle, diarizer: DeploymentHandle | None, media: bytes | str, options: VideoSummaryOptions
) -> Transcript:
    if options.diarize and diarizer is None:
        raise InvalidRequest("Speaker diarization is not served here; drop diarize.", param="diarize")
    request = TranscriptionOptions(
        **options.speaker_fields(),
        language=options.language,
        prompt=options.prompt,
        diarize=options.diarize,
        word_timestamps=True,
        subtitles="srt",
    )
    return await speakers.transcribe(asr, diarizer, media, request)


def pieces(transcript: Transcript) -> list[str]:
    """What the summary is asked of: segment texts, or with speakers one `SPEAKER: text` piece per turn."""
    if not transcript.diarized:
        return [s.text.strip() for s in transcript.segments]
    turns: list[tuple[str, list[str]]] = []
    for segment in transcript.segments:
        speaker = segment.speaker or "unknown"
        if turns and turns[-1][0] == speaker:
            turns[-1][1].append(segment.text.strip())
        else:
            turns.append((speaker, [segment.text.strip()]))
    return [f"{speaker}: {' '.join(texts)}" for speaker, texts in turns]


def _timings(transcript: Transcript, summariser: Summariser, summarise_s: float, started: float) -> SpeechTimings:
    """The run's timings, each stage also recorded once as `mms_pipeline_stage_seconds` (the ASR timed its own)."""
    timings = transcript.timings.model_copy(
        update={
            "summarise": summarise_s,
            "total": time.perf_counter() - started,
            "llm_calls": summariser.calls,
            "chunks": summariser.chunks,
        }
    )
    stages = {"decode": timings.decode, "transcribe": timings.transcribe, "align": timings.align}
    if transcript.diarized:
        stages["diarize"] = timings.diarize
    stages["summarise"] = timings.summarise
    metrics.observe_stages(PIPELINE, stages)
    return timings


async def summarize_video(
    asr: DeploymentHandle,
    diarizer: DeploymentHandle | None,
    summariser: Summariser,
    media: bytes | str,
    options: VideoSummaryOptions,
) -> VideoSummaryResult:
    started = time.perf_counter()
    plan = await summariser.plan()  # before the ASR: a bad LLM setting fails fast
    transcript = await transcribe(asr, diarizer, media, options)
    t0 = time.perf_counter()
    summary = ""
    text = pieces(transcript)
    if transcript.text.strip():
        prompt = await summariser.final_prompt(plan, text, "\n" if transcript.diarized else " ")
        summary = await summariser.complete(plan, prompt)
    return VideoSummaryResult(
        language=transcript.language,
        duration=transcript.duration,
        srt=transcript.subtitles or "",
        segments=transcript.segments,
        aligned=transcript.aligned,
        alignment_note=transcript.alignment_note,
        summary=summary,
        summary_model=plan.llm_model,
        usage=summariser.usage,
        timings=_timings(transcript, summariser, time.perf_counter() - t0, started),
        speakers=transcript.speakers if transcript.diarized else None,
        transcript="\n".join(text) if transcript.diarized else None,
    )


async def summarize_video_stream(
    asr: DeploymentHandle,
    diarizer: DeploymentHandle | None,
    summariser: Summariser,
    media: bytes | str,
    options: VideoSummaryOptions,
) -> AsyncIterator[VideoSummaryEvent]:
    started = time.perf_counter()
    plan = await summariser.plan()
    transcript = await transcribe(asr, diarizer, media, options)
    text = pieces(transcript)
    yield VideoSummaryEvent(
        type="transcript",
        language=transcript.language,
        duration=transcript.duration,
        text="\n".join(text) if transcript.diarized else transcript.text,
        segments=transcript.segments,
        speakers=transcript.speakers if transcript.diarized else None,
    )
    t0 = time.perf_counter()
    parts: list[str] = []
    if transcript.text.strip():
        prompt = await summariser.final_prompt(plan, text, "\n" if transcript.diarized else " ")
        async for delta in summariser.stream(plan, prompt):
            parts.append(delta)
            yield VideoSummaryEvent(type="summary.delta", delta=delta)
    yield VideoSummaryEvent(
        type="done",
        summary="".join(parts),
        srt=transcript.subtitles or "",
        usage=summariser.usage,
        timings=_timings(transcript, summariser, time.perf_counter() - t0, started),
    )


@serve.deployment(name="VideoSummary")
class VideoSummaryPipeline:
    """The pipeline as a deployment: the ASR named `asr`, summarised by the LLM named `llm` (or a request's)."""

    def __init__(
        self, models: ModelRegistry, config: VideoSummaryConfig, asr: str, llm: str, diarizer: str | None = None
    ):
        self._models = models
        self._asr = models.get("asr", asr)
        self._diarizer = models.get("diarizer", diarizer) if diarizer is not None else None
        self._llm = llm  # the configured summariser's; a request may name another LLM or adapter
        # A configured alias is the Ingress's to resolve (it names the target it picked in each request's
        # options); a caller of this deployment's own handle gets the LLM it was bound to.
        aliased = config.llm_model is not None and config.llm_model not in models.served("llm")
        self._config = config.model_copy(update={"llm_model": None}) if aliased else config

    def _summariser(self, options: VideoSummaryOptions) -> Summariser:
        model = options.model or self._llm
        llm, llm_stream = self._models.llm(model), self._models.llm(model, stream=True)
        return Summariser(llm, self._config, options, llm_stream)

    async def summarize(
        self, media: bytes | str, options: VideoSummaryOptions | dict | None = None
    ) -> VideoSummaryResult:
        with metrics.pipeline_run(PIPELINE):
            options = parse_request(VideoSummaryOptions, options or {})
            return await summarize_video(self._asr, self._diarizer, self._summariser(options), media, options)

    async def summarize_stream(
        self, media: bytes | str, options: VideoSummaryOptions | dict | None = None
    ) -> AsyncIterator[VideoSummaryEvent]:
        with metrics.pipeline_run(PIPELINE):
            options = parse_request(VideoSummaryOptions, options or {})
            summariser = self._summariser(options)
            async for event in summarize_video_stream(self._asr, self._diarizer, summariser, media, options):
                yield event
