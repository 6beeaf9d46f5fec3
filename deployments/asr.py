"""The ASR deployment: WhisperX (faster-whisper + pyannote VAD + wav2vec2 alignment).

    asr = serve.get_deployment_handle("ASR", app_name="default")
    transcript = await asr.transcribe.remote(media_bytes_or_path, {"language": "en"})

Media arrives as raw bytes (or a path on the replica's machine) and is decoded here, so
the ingress stays light. Speakers come from the Diarizer, run beside this deployment on the
same media; `attribute_speakers` then assigns its turns to the transcript's segments and words
(whisperx's `assign_word_speakers`) and renders the subtitles with them.

A replica runs `speech.lanes` transcriptions at once: one CTranslate2 model with that many
workers, and as many WhisperX pipelines over it, since a pipeline keeps per-call state (options,
max_length) on itself. faster-whisper batches each file's VAD chunks (`batch_size`); the lanes
keep the cores (or the GPU) busy across files, as bulk transcription and concurrent users need.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import os
import queue
import time
from pathlib import Path
from typing import Any

import numpy as np
from ray import serve

from deployments.base import ModelDeployment
from serve_app.common import metrics
from serve_app.common.gpu_plan import GPUClaim
from serve_app.config import SpeechConfig
from serve_app.errors import InvalidRequest, NotFound, parse_request
from serve_app.protocol import (
    Diarization,
    SpeechTimings,
    Transcript,
    TranscriptionOptions,
    TranscriptionSegment,
    TranscriptionWord,
)

PUNKT_FILES = ("collocations.tab", "sent_starters.txt", "abbrev_types.txt", "ortho_context.tab")


def write_minimal_punkt(nltk_data: Path) -> None:
    """Empty Punkt parameters for every language whisperx may ask for.

    whisperx.align splits sentences with NLTK's punkt_tab and calls nltk.download when it
    is missing; empty parameters still split on sentence punctuation, offline.
    """
    from whisperx.utils import PUNKT_LANGUAGES

    for language in {"english", *PUNKT_LANGUAGES.values()}:
        directory = nltk_data / "tokenizers" / "punkt_tab" / language
        directory.mkdir(parents=True, exist_ok=True)
        for name in PUNKT_FILES:
            (directory / name).touch()


def _words(raw_words: list[dict]) -> list[TranscriptionWord]:
    # Words the aligner could not place (digits, symbols) have no start/end: they are left out.
    return [
        TranscriptionWord(word=w["word"], start=float(w["start"]), end=float(w["end"]), speaker=w.get("speaker"))
        for w in raw_words
        if "start" in w and "end" in w
    ]


def _segments(raw: list[dict], aligned: bool, temperature: float) -> list[TranscriptionSegment]:
    return [
        TranscriptionSegment(
            id=i,
            start=float(s["start"]),
            end=float(s["end"]),
            text=s["text"],
            temperature=temperature,
            avg_logprob=float(s.get("avg_logprob", 0.0)),
            words=_words(s.get("words", [])) if aligned else None,
            speaker=s.get("speaker"),
        )
        for i, s in enumerate(raw)
    ]


@serve.deployment(name="ASR")
class ASR(ModelDeployment):
    kind, library = "asr", "whisperx"

    def __init__(self, speech: SpeechConfig, model_store: Path, data_dir: Path, gpu: GPUClaim | None = None):
        # CTranslate2 has no allocator cap: the budget bounds its torch parts (VAD, aligners) only.
        super().__init__(
            speech.served_name,
            data_dir,
            gpu,
            model_store=model_store,
            model=speech.model,
            version=speech.version,
            device=speech.device,
        )
        import torch
        import whisperx
        from faster_whisper.tokenizer import _LANGUAGE_CODES

        self._config = speech
        self._languages = set(_LANGUAGE_CODES)
        compute_type = speech.compute_type or ("float16" if self.device == "cuda" else "int8")
        torch.set_num_threads(speech.cpu_threads)
        write_minimal_punkt(Path(os.environ["NLTK_DATA"]))
        lanes = self._load_lanes(speech, compute_type)
        self._lanes: queue.SimpleQueue = queue.SimpleQueue()  # the free ones
        for lane in lanes:
            self._lanes.put(lane)
        first = lanes[0]
        self._base_options = first.options
        self._whisper_max_length = first.model.max_length
        self._tokenizer = first.model.hf_tokenizer
        self._aligners: dict[str, tuple[Any, dict]] = {}
        for language, aligner in speech.aligners.items():
            ref = self._verify(aligner.model, aligner.version)
            self._aligners[language] = whisperx.load_align_model(language, self.device, model_name=str(ref.path))
        self._names = {speech.served_name, *speech.aliases}
        self._tags = {"model": speech.served_name}
        self._announce_loaded(
            f"{compute_type}, {speech.lanes} lane(s), aligners for {sorted(self._aligners) or 'none'}"
        )

    def _load_lanes(self, speech: SpeechConfig, compute_type: str) -> list[Any]:
        """`speech.lanes` WhisperX pipelines over one CTranslate2 model with as many workers: the weights
        are loaded once and each worker decodes in parallel; each lane keeps the per-call state a
        pipeline holds on itself (options, max_length) and its own VAD model."""
        import whisperx
        from whisperx.asr import WhisperModel

        shared = WhisperModel(
            str(self.model_path),
            device=self.device,
            compute_type=compute_type,
            cpu_threads=speech.cpu_threads,
            num_workers=speech.lanes,
            local_files_only=True,
        )
        return [
            whisperx.load_model(
                str(self.model_path),
                device=self.device,
                compute_type=compute_type,
                asr_options={"beam_size": speech.beam_size},
                vad_method="pyannote",  # weights ship inside the whisperx wheel; silero would download
                threads=speech.cpu_threads,
                local_files_only=True,
                model=copy.copy(shared),  # its own max_length, the same CTranslate2 model
            )
            for _ in range(speech.lanes)
        ]

    async def transcribe(self, media: bytes | str, options: TranscriptionOptions | dict | None = None) -> Transcript:
        options = parse_request(TranscriptionOptions, options or {})
        self._check(options)
        # Decoding and inference block: run them off the replica's event loop so health
        # checks and card() keep answering during a long file.
        return await asyncio.to_thread(self._transcribe_sync, media, options)

    async def check_health(self) -> None:
        # A second of a modulated tone through VAD + decoder exercises the loaded model.
        t = np.arange(16_000, dtype=np.float32) / 16_000
        tone = (0.5 * np.sin(2 * np.pi * 220 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
        await asyncio.to_thread(self._run_whisperx, tone, TranscriptionOptions(language="en", word_timestamps=False))

    async def attribute_speakers(
        self, transcript: Transcript, diarization: Diarization, subtitles: str | None = None
    ) -> Transcript:
        """`transcript` with the Diarizer's speakers on its segments and words, and `subtitles`
        ("srt", "vtt") rendered with them."""
        import pandas as pd
        from whisperx.diarize import assign_word_speakers

        turns = pd.DataFrame([t.model_dump() for t in diarization.turns], columns=["start", "end", "speaker"])
        # Unaligned segments have no words (None), which whisperx would iterate: leave the key out.
        raw = {"segments": [s.model_dump(exclude={"words"} if s.words is None else None) for s in transcript.segments]}
        # fill_nearest: a segment between two turns (a pause the diarizer left out) still gets a speaker.
        segments = [
            TranscriptionSegment.model_validate(s)
            for s in assign_word_speakers(turns, raw, fill_nearest=True)["segments"]
        ]
        timings = transcript.timings.model_copy(update={"diarize": diarization.seconds})
        kind = subtitles if subtitles in ("srt", "vtt") else None
        return transcript.model_copy(
            update={
                "segments": segments,
                "diarized": True,
                "speakers": diarization.speakers,
                "subtitles": self._subtitles(segments, transcript.duration, kind) if kind else transcript.subtitles,
                "timings": timings,
            }
        )

    def _check(self, options: TranscriptionOptions) -> None:
        if options.model is not None and options.model not in self._names:
            raise NotFound(f"The model '{options.model}' does not exist", param="model")
        if options.language is not None and options.language not in self._languages:
            raise InvalidRequest(
                f"Unknown language code '{options.language}'; use an ISO-639-1 code Whisper knows (en, de, fr, ...).",
                param="language",
            )
        if options.diarize:
            raise InvalidRequest(
                "The ASR deployment does not diarize: call the app's `transcribe` (it runs the Diarizer beside "
                "the ASR), or the Diarizer and then `attribute_speakers`.",
                param="diarize",
            )

    def _transcribe_sync(self, media: bytes | str, options: TranscriptionOptions) -> Transcript:
        from serve_app.common.media import decode_audio

        started = time.perf_counter()
        audio = decode_audio(
            media, max_bytes=self._config.max_media_bytes, max_seconds=self._config.max_audio_seconds
        ).samples
        decoded = time.perf_counter()
        transcript = self._run_whisperx(audio, options)
        transcript.timings.decode = decoded - started
        transcript.timings.total = time.perf_counter() - started
        if transcript.duration > 0:
            metrics.ASR_AUDIO_SECONDS.inc(transcript.duration, self._tags)
            metrics.ASR_RTF.observe(transcript.timings.total / transcript.duration, self._tags)
        return transcript

    def _subtitles(self, segments: list[TranscriptionSegment], duration: float, kind: str | None) -> str | None:
        from serve_app.common.subtitles import build_cues, render_srt, render_vtt

        if kind is None:
            return None
        limits = self._config.subtitles
        cues = build_cues(segments, duration, max_line_chars=limits.max_line_chars, max_lines=limits.max_lines)
        return render_srt(cues) if kind == "srt" else render_vtt(cues)

    def _max_length(self, prompt: str | None) -> int:
        # whisperx's batched decoder ignores asr_options' max_new_tokens and always decodes up to
        # the model's max_length (prompt included): bound that instead.
        if self._config.max_new_tokens is None:
            return self._whisper_max_length
        prompt_tokens = 4 + (len(self._tokenizer.encode(" " + prompt.strip()).ids) if prompt else 0)
        return min(self._whisper_max_length, prompt_tokens + self._config.max_new_tokens)

    def _run_whisperx(self, audio: np.ndarray, options: TranscriptionOptions) -> Transcript:
        import whisperx
        from whisperx.utils import LANGUAGES

        timings = SpeechTimings()
        lane = self._lanes.get()  # blocks this worker thread (not the event loop) until a lane is free
        try:
            t0 = time.perf_counter()
            lane.options = dataclasses.replace(
                self._base_options,
                initial_prompt=options.prompt,
                temperatures=[options.temperature],
            )
            lane.model.max_length = self._max_length(options.prompt)
            result = lane.transcribe(
                audio, batch_size=self._config.batch_size, language=options.language, task=options.task
            )
            timings.transcribe = time.perf_counter() - t0
        finally:
            self._lanes.put(lane)
        language = result["language"]
        raw = result["segments"]
        # A translation is English text, whatever language was spoken: English words to align.
        text_language = "en" if options.task == "translate" else language
        aligned, note = False, None
        if not options.word_timestamps:
            note = "word alignment was not requested"
        elif text_language not in self._aligners:
            note = f"no aligner is configured for language '{text_language}': segment timings only"
        elif raw:
            t0 = time.perf_counter()
            model, metadata = self._aligners[text_language]
            raw = whisperx.align(raw, model, metadata, audio, self.device)["segments"]
            timings.align = time.perf_counter() - t0
            aligned = True
        segments = _segments(raw, aligned, options.temperature)
        duration = len(audio) / 16_000
        return Transcript(
            model=self.served_name,
            language=language,
            language_name=LANGUAGES.get(language, language),
            duration=duration,
            text=" ".join(s.text.strip() for s in segments),
            segments=segments,
            aligned=aligned,
            alignment_note=note,
            subtitles=self._subtitles(segments, duration, options.subtitles),
            timings=timings,
        )
