"""Test doubles shared by the unit and HTTP tests: fake deployments and the handles over them.

A fake deployment is a plain object with the methods the real one exposes; `FakeHandle` makes it
look like a DeploymentHandle to the code under test (ingress routes, pipelines), with Serve's
calling conventions and error delivery, so that code runs unchanged and no Ray starts.
`RecordedMetrics` catches what serve_app.common.metrics records, for tests that check it.
"""

from __future__ import annotations

import copy
import inspect
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from types import SimpleNamespace
from typing import Any, NamedTuple

from ray.exceptions import RayTaskError

from serve_app.common import metrics
from serve_app.protocol import (
    AssistantMessage,
    ChatChoice,
    ChatChunkChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChunkDelta,
    Completion,
    CompletionChoice,
    CompletionRequest,
    DetectionRequest,
    DetectionResponse,
    Diarization,
    DiarizationOptions,
    ModelCard,
    SpeakerTurn,
    Transcript,
    TranscriptionOptions,
    TranscriptionSegment,
    Usage,
)


class Call(NamedTuple):
    method: str
    args: tuple
    kwargs: dict
    multiplexed_model_id: str = ""  # the handle option Serve routes adapters by


def as_delivered_by_ray(exc: BaseException) -> BaseException:
    """What the caller sees when a replica raises: a RayTaskError that is also an instance of `exc`'s class."""
    if isinstance(exc, RayTaskError):
        return exc
    return RayTaskError("fake_replica", "Traceback (fake replica)", exc).as_instanceof_cause()


class FakeResponse:
    """Like Serve's DeploymentResponse: awaiting it runs the call and gives the result or raises."""

    def __init__(self, handle: FakeHandle, method: Callable, args: tuple, kwargs: dict):
        self._handle, self._method, self._args, self._kwargs = handle, method, args, kwargs

    def __await__(self):
        return self._result().__await__()

    async def _result(self) -> Any:
        if self._handle.refusal is not None:
            raise self._handle.refusal
        try:
            result = self._method(*self._args, **self._kwargs)
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:
            raise as_delivered_by_ray(exc) from None
        if inspect.isasyncgen(result) or inspect.isgenerator(result):
            raise TypeError("a generator method is called through handle.options(stream=True)")
        return result


class FakeResponseGenerator:
    """Like Serve's DeploymentResponseGenerator: an async iterator over what the method yields."""

    def __init__(self, handle: FakeHandle, method: Callable, args: tuple, kwargs: dict):
        self._handle, self._method, self._args, self._kwargs = handle, method, args, kwargs
        self._items: AsyncIterator | None = None

    def __aiter__(self) -> FakeResponseGenerator:
        return self

    async def __anext__(self) -> Any:
        if self._handle.refusal is not None:
            raise self._handle.refusal
        try:
            if self._items is None:
                self._items = _async_items(self._method(*self._args, **self._kwargs))
            return await self._items.__anext__()
        except StopAsyncIteration:
            raise
        except Exception as exc:
            raise as_delivered_by_ray(exc) from None


def _async_items(result: Any) -> AsyncIterator:
    if inspect.isasyncgen(result):
        return result
    if inspect.isgenerator(result):

        async def items():
            for item in result:
                yield item

        return items()
    raise TypeError("handle.options(stream=True) needs a generator method")


class _RemoteMethod:
    def __init__(self, handle: FakeHandle, name: str, method: Callable):
        self._handle, self._name, self._method = handle, name, method

    def remote(self, *args, **kwargs) -> FakeResponse | FakeResponseGenerator:
        self._handle.calls.append(Call(self._name, args, kwargs, self._handle.multiplexed_model_id))
        kind = FakeResponseGenerator if self._handle.stream else FakeResponse
        return kind(self._handle, self._method, args, kwargs)


class FakeHandle:
    """A DeploymentHandle over a fake deployment: `handle.method.remote(...)`, `handle.options(stream=True)`.

    An exception the method raises reaches the caller wrapped as Ray delivers a replica's
    (`RayTaskError(<cls>)`, still an instance of `<cls>`). `refusal` is raised instead of calling
    at all, as Serve's router refuses a call itself (BackPressureError, DeploymentUnavailableError).
    The call runs when awaited or iterated. `calls` records every call, shared with `options()` copies.
    """

    def __init__(self, target: object, *, name: str | None = None, refusal: BaseException | None = None):
        self.target = target
        self.deployment_name = name or type(target).__name__
        self.refusal = refusal
        self.stream = False
        self.multiplexed_model_id = ""
        self.calls: list[Call] = []

    @classmethod
    def of(cls, name: str = "Fake", refusal: BaseException | None = None, **methods: Callable) -> FakeHandle:
        """A handle over just these methods: `FakeHandle.of(detect=lambda request: ...)`."""
        return cls(SimpleNamespace(**methods), name=name, refusal=refusal)

    def options(self, *, stream: bool | None = None, multiplexed_model_id: str | None = None, **_: Any) -> FakeHandle:
        copied = copy.copy(self)
        if stream is not None:
            copied.stream = stream
        if multiplexed_model_id is not None:
            copied.multiplexed_model_id = multiplexed_model_id
        return copied

    def __getattr__(self, name: str) -> _RemoteMethod:
        if name.startswith("_"):
            raise AttributeError(name)
        method = getattr(self.target, name)
        if not callable(method):
            raise AttributeError(f"{self.deployment_name}.{name} is not a method")
        return _RemoteMethod(self, name, method)


# --- fake deployments -------------------------------------------------------------------------


class FakeLLM:
    """The LLM deployment's methods without a model: one token per word, every answer `reply`.

    Streams send the reply one word per chunk; with `fail_after`, the stream raises `failure`
    after that many chunks (an engine dying mid-answer). `prompts` holds every prompt, in order.
    """

    def __init__(
        self,
        reply: str = "short partial summary",
        *,
        name: str = "fake",
        max_model_len: int = 1024,
        fail_after: int | None = None,
        failure: Exception | None = None,
    ):
        self.reply = reply
        self.name = name
        self.max_model_len = max_model_len
        self.fail_after = fail_after
        self.failure = failure or RuntimeError("engine died: /internal/path")
        self.prompts: list[str] = []

    def card(self, model: str | None = None) -> ModelCard:
        card = ModelCard(id=self.name, kind="llm", engine="fake", version="v1", max_model_len=self.max_model_len)
        # As the LLM deployment: an adapter's card names its base as `parent`.
        return card if model is None else card.model_copy(update={"id": model, "parent": self.name})

    def count_tokens(self, text: str | list[str]) -> int | list[int]:
        # The deployment's contract: one text, or a list counted in one call.
        return [len(t.split()) for t in text] if isinstance(text, list) else len(text.split())

    def chat(self, request: ChatCompletionRequest) -> ChatCompletion:
        prompt = self._prompt(request.messages[-1].text())
        message = AssistantMessage(content=self.reply)
        return ChatCompletion(
            model=request.model, choices=[ChatChoice(message=message, finish_reason="stop")], usage=self._usage(prompt)
        )

    async def chat_stream(self, request: ChatCompletionRequest) -> AsyncIterator[ChatCompletionChunk]:
        prompt = self._prompt(request.messages[-1].text())
        base = {"id": "chatcmpl-fake", "created": 0, "model": request.model}
        yield ChatCompletionChunk(**base, choices=[ChatChunkChoice(delta=ChunkDelta(role="assistant", content=""))])
        async for word in self._words():
            yield ChatCompletionChunk(**base, choices=[ChatChunkChoice(delta=ChunkDelta(content=word))])
        yield ChatCompletionChunk(**base, choices=[ChatChunkChoice(delta=ChunkDelta(), finish_reason="stop")])
        if request.stream_options and request.stream_options.include_usage:
            yield ChatCompletionChunk(**base, choices=[], usage=self._usage(prompt))

    def completion(self, request: CompletionRequest) -> Completion:
        prompt = self._prompt(request.prompt)
        choice = CompletionChoice(text=self.reply, finish_reason="stop")
        return Completion(model=request.model, choices=[choice], usage=self._usage(prompt))

    async def completion_stream(self, request: CompletionRequest) -> AsyncIterator[Completion]:
        self._prompt(request.prompt)
        async for word in self._words():
            yield Completion(id="cmpl-fake", created=0, model=request.model, choices=[CompletionChoice(text=word)])

    def _prompt(self, prompt: str | list[str]) -> str:
        text = prompt if isinstance(prompt, str) else "\n".join(prompt)
        self.prompts.append(text)
        return text

    async def _words(self) -> AsyncIterator[str]:
        for sent, word in enumerate(self.reply.split(" ")):
            if self.fail_after is not None and sent >= self.fail_after:
                raise self.failure
            yield word if sent == 0 else f" {word}"

    def _usage(self, prompt: str) -> Usage:
        return Usage.of(len(prompt.split()), len(self.reply.split()))


class FakeASR:
    """The ASR deployment's methods: a transcript saying how many bytes it got (kept in `media`)."""

    def __init__(self, name: str = "fake-whisper"):
        self.name = name
        self.media: list[bytes | str] = []
        self.options: list[TranscriptionOptions] = []

    def card(self) -> ModelCard:
        return ModelCard(id=self.name, kind="asr", engine="fake", version="v1")

    def transcribe(self, media: bytes | str, options: TranscriptionOptions) -> Transcript:
        self.media.append(media)
        self.options.append(options)
        text = f"{len(media)} bytes"
        segment = TranscriptionSegment(id=0, start=0.0, end=1.0, text=text)
        subtitles = f"1\n00:00:00,000 --> 00:00:01,000\n{text}\n" if options.subtitles else None
        return Transcript(
            model=self.name,
            language=options.language or "en",
            language_name="english",
            duration=1.0,
            text=text,
            segments=[segment],
            aligned=False,
            subtitles=subtitles,
        )

    def attribute_speakers(
        self, transcript: Transcript, diarization: Diarization, subtitles: str | None = None
    ) -> Transcript:
        """Each segment takes the turn it overlaps most (the real ASR uses whisperx's assign_word_speakers);
        subtitles are rendered by the real module, speakers included."""
        from serve_app.common.subtitles import build_cues, render_srt, render_vtt

        def overlap(segment: TranscriptionSegment, turn: SpeakerTurn) -> float:
            return min(segment.end, turn.end) - max(segment.start, turn.start)

        def speaker(s: TranscriptionSegment) -> str | None:
            return max(diarization.turns, key=lambda t: overlap(s, t)).speaker if diarization.turns else None

        segments = [s.model_copy(update={"speaker": speaker(s)}) for s in transcript.segments]
        cues = build_cues(segments, transcript.duration)
        rendered = {"srt": render_srt, "vtt": render_vtt}[subtitles](cues) if subtitles else None
        return transcript.model_copy(
            update={"segments": segments, "diarized": True, "speakers": diarization.speakers, "subtitles": rendered}
        )


class FakeDiarizer:
    """The Diarizer's methods: `turns` as given (two speakers by default), known names applied in order."""

    def __init__(self, name: str = "fake-diarizer", turns: list[SpeakerTurn] | None = None):
        self.name = name
        self.turns = turns or [
            SpeakerTurn(start=0.0, end=0.6, speaker="SPEAKER_00"),
            SpeakerTurn(start=0.6, end=1.0, speaker="SPEAKER_01"),
        ]
        self.media: list[bytes | str] = []
        self.options: list[DiarizationOptions] = []

    def card(self) -> ModelCard:
        return ModelCard(id=self.name, kind="diarizer", engine="fake", version="v1")

    def diarize(self, media: bytes | str, options: DiarizationOptions) -> Diarization:
        self.media.append(media)
        self.options.append(options)
        labels = sorted({t.speaker for t in self.turns})
        names = dict(zip(labels, options.known_speaker_names, strict=False))
        turns = [t.model_copy(update={"speaker": names.get(t.speaker, t.speaker)}) for t in self.turns]
        return Diarization(
            model=self.name, duration=1.0, speakers=[names.get(x, x) for x in labels], turns=turns, seconds=0.5
        )


class FakeDetector:
    """The detector deployment's methods: no detections, the request kept in `requests`."""

    def __init__(self, name: str = "fake-yolo"):
        self.name = name
        self.requests: list[DetectionRequest] = []

    def card(self) -> ModelCard:
        return ModelCard(id=self.name, kind="detector", engine="fake", version="v1")

    def detect(self, request: DetectionRequest, decoded: Any = None) -> DetectionResponse:
        self.requests.append(request)
        return DetectionResponse(model=request.model, width=1, height=1, detections=[], batch_size=1)


# --- metrics ----------------------------------------------------------------------------------


class _Recorder:
    def __init__(self, samples: list[tuple[float, dict[str, str]]]):
        self._samples = samples

    def _record(self, value: float, tags: dict[str, str] | None = None) -> None:
        self._samples.append((value, dict(tags or {})))

    inc = observe = set = _record


class RecordedMetrics:
    """Every metric of serve_app.common.metrics recording here instead of into Ray, for the test's duration.

    `samples("mms_batch_size", model="m")` is the values recorded with (at least) those tags, in order.
    """

    def __init__(self, monkeypatch):
        self._by_name: dict[str, list[tuple[float, dict[str, str]]]] = defaultdict(list)
        for metric in metrics.CATALOGUE:
            monkeypatch.setattr(metric, "_metric", _Recorder(self._by_name[metric.name]))

    def samples(self, name: str, **tags: str) -> list[float]:
        return [value for value, got in self.tagged(name) if tags.items() <= got.items()]

    def tagged(self, name: str) -> list[tuple[float, dict[str, str]]]:
        if name not in {m.name for m in metrics.CATALOGUE}:
            raise KeyError(f"{name} is not in serve_app.common.metrics")
        return list(self._by_name[name])


class FakeEngine:
    """An LLM engine (deployments/llm/engines/base.py's protocol) that streams a scripted answer.

    For the LLM deployment's own logic (request mapping, stats, cards) without a model: each
    generation yields `words` one delta at a time, up to `max_tokens`, and records what it was asked.
    """

    def __init__(self, words: tuple[str, ...] = ("Hello", " there"), *, name: str = "fake", max_model_len: int = 1024):
        self.name = name
        self.max_model_len = max_model_len
        self.vocab_size = 1024
        self.capabilities = frozenset({"structured_outputs", "logprobs"})
        self.tokenizer = None
        self.words = words
        self.calls: list[tuple[list[int], Any, str]] = []
        self.healthy = True

    async def generate(self, prompt_ids: list[int], settings: Any, request_id: str) -> AsyncIterator[Any]:
        from deployments.llm.engines.base import GenerationDelta

        self.calls.append((list(prompt_ids), settings, request_id))
        words = self.words[: settings.max_tokens]
        for i, word in enumerate(words):
            last = i == len(words) - 1
            finish = ("length" if len(words) == settings.max_tokens else "stop") if last else None
            yield GenerationDelta(text=word, new_tokens=1, finish_reason=finish)

    async def check_health(self) -> None:
        if not self.healthy:
            raise RuntimeError("fake engine marked unhealthy")

    def shutdown(self) -> None:
        self.healthy = False
