"""The Diarizer deployment: a pyannote speaker-diarization pipeline, who spoke when.

    diarizer = serve.get_deployment_handle("Diarizer", app_name="default")
    diarization = await diarizer.diarize.remote(media_bytes_or_path, {"num_speakers": 2})

Its own deployment, not a part of the ASR, so it has its own replicas, autoscaling and GPU
share, and runs side by side with the ASR on the same media (the app's `transcribe` then has
the ASR assign its turns to segments and words). Known speakers: each reference clip is
embedded with the pipeline's own embedding model and matched one-to-one (Hungarian, on cosine
similarity) to the diarized speakers' centroid embeddings; a match at or above
`match_threshold` renames that speaker.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import threading
import time
from pathlib import Path

import numpy as np
from ray import serve

from deployments.base import ModelDeployment
from deployments.embedding_common import unit_rows
from serve_app.common.gpu_plan import GPUClaim
from serve_app.config import DiarizationConfig
from serve_app.errors import InvalidRequest, PayloadTooLarge, parse_request
from serve_app.protocol import Diarization, DiarizationOptions, KnownSpeakerMatch, SpeakerTurn

SAMPLE_RATE = 16_000
REFERENCES = "known_speaker_references"


def reference_bytes(reference: str | bytes, index: int) -> bytes:
    """A reference clip's bytes: raw bytes as given, or an audio data URL (`data:audio/wav;base64,...`)."""
    if isinstance(reference, bytes):
        return reference
    header, comma, payload = reference.partition(",")
    if not comma or not header.startswith("data:") or not header.endswith(";base64"):
        raise InvalidRequest(
            f"known_speaker_references[{index}] is not a base64 data URL (data:audio/...;base64,...)", param=REFERENCES
        )
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(f"known_speaker_references[{index}] is not valid base64", param=REFERENCES) from None


def match_known_speakers(
    names: list[str], references: np.ndarray, labels: list[str], centroids: np.ndarray, threshold: float
) -> list[KnownSpeakerMatch]:
    """Each name to at most one diarized speaker (and each speaker to at most one name), best total similarity."""
    from scipy.optimize import linear_sum_assignment

    if not labels or not names:
        return [KnownSpeakerMatch(name=n, label=None, similarity=0.0) for n in names]
    # Centred on the speakers' mean: what the speakers of this recording share (room, microphone, and
    # much of any embedding) says nothing about which one a reference is.
    centre = centroids.mean(axis=0) if len(labels) > 1 else 0.0
    similarity = _unit(references - centre) @ _unit(centroids - centre).T  # (names, speakers)
    rows, cols = linear_sum_assignment(similarity, maximize=True)
    best = {int(r): int(c) for r, c in zip(rows, cols, strict=True)}
    matches = []
    for i, name in enumerate(names):
        j = best.get(i)
        score = float(similarity[i, j]) if j is not None else float(similarity[i].max())
        label = labels[j] if j is not None and score >= threshold else None
        matches.append(KnownSpeakerMatch(name=name, label=label, similarity=round(score, 4)))
    return matches


def _unit(vectors: np.ndarray) -> np.ndarray:
    # NaNs counted as zeros, so a broken embedding scores 0 rather than poisoning the assignment.
    return unit_rows(np.nan_to_num(np.asarray(vectors, dtype=np.float64)))


@serve.deployment(name="Diarizer")
class Diarizer(ModelDeployment):
    kind, library = "diarizer", "pyannote"

    def __init__(
        self,
        config: DiarizationConfig,
        model_store: Path,
        data_dir: Path,
        max_media_bytes: int,
        max_audio_seconds: float,
        gpu: GPUClaim | None = None,
    ):
        super().__init__(
            config.served_name,
            data_dir,
            gpu,
            model_store=model_store,
            model=config.model,
            version=config.version,
            device=config.device,
        )
        import torch
        from pyannote.audio import Pipeline

        torch.set_num_threads(config.cpu_threads)
        self._config = config
        self._limits = (max_media_bytes, max_audio_seconds)
        self._pipeline = Pipeline.from_pretrained(str(self.model_path)).to(torch.device(self.device))
        # One call at a time: the pipeline keeps per-call state (hooks, inference buffers) on itself.
        self._lock = threading.Lock()
        self._announce_loaded(f"speakers up to {config.max_speakers}, known speakers up to {config.max_known_speakers}")

    async def diarize(self, media: bytes | str, options: DiarizationOptions | dict | None = None) -> Diarization:
        options = parse_request(DiarizationOptions, options or {})
        self._check(options)
        # Decoding and inference block: off the event loop, so health checks and card() keep answering.
        return await asyncio.to_thread(self._diarize_sync, media, options)

    async def embed_reference(self, clip: bytes | str) -> list[float]:
        """A reference clip's speaker embedding (what known speakers are matched with)."""
        audio = self._reference(reference_bytes(clip, 0), 0)
        return (await asyncio.to_thread(self._embed, [audio]))[0].tolist()

    async def check_health(self) -> None:
        # A second of a tone: segmentation runs, finds no speech, and the pipeline returns early.
        t = np.arange(SAMPLE_RATE, dtype=np.float32) / SAMPLE_RATE
        await asyncio.to_thread(self._run, (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), DiarizationOptions())

    def _check(self, options: DiarizationOptions) -> None:
        cap = self._config.max_speakers
        for field in ("num_speakers", "min_speakers", "max_speakers"):
            value = getattr(options, field)
            if value is not None and value > cap:
                raise InvalidRequest(f"{field} ({value}) is above this server's cap of {cap} speakers", param=field)
        if len(options.known_speaker_names) > self._config.max_known_speakers:
            raise InvalidRequest(
                f"{len(options.known_speaker_names)} known speakers; at most {self._config.max_known_speakers}",
                param="known_speaker_names",
            )

    def _reference(self, clip: bytes, index: int) -> np.ndarray:
        from serve_app.common.media import decode_audio

        config = self._config
        # Decoding stops just past the limit, so an over-long clip costs no more than a valid one; a clip
        # is a field of the request, so too long is a 400 naming it, not the upload's 413.
        try:
            audio = decode_audio(
                clip, max_bytes=self._limits[0], max_seconds=config.max_reference_seconds + 1.0, param=REFERENCES
            ).samples
        except PayloadTooLarge:
            raise InvalidRequest(
                f"known_speaker_references[{index}] is longer than the {config.max_reference_seconds:g} s accepted",
                param=REFERENCES,
            ) from None
        seconds = len(audio) / SAMPLE_RATE
        if seconds > config.max_reference_seconds or seconds < config.min_reference_seconds:
            raise InvalidRequest(
                f"known_speaker_references[{index}] lasts {seconds:.1f} s; clips of "
                f"{config.min_reference_seconds:g}-{config.max_reference_seconds:g} s are accepted",
                param=REFERENCES,
            )
        return audio

    def _diarize_sync(self, media: bytes | str, options: DiarizationOptions) -> Diarization:
        from serve_app.common.media import decode_audio

        started = time.perf_counter()
        # References first: a bad clip is refused before the long part.
        clips = [self._reference(reference_bytes(r, i), i) for i, r in enumerate(options.known_speaker_references)]
        audio = decode_audio(media, max_bytes=self._limits[0], max_seconds=self._limits[1]).samples
        output = self._run(audio, options)
        labels = list(output.speaker_diarization.labels())
        known: list[KnownSpeakerMatch] = []
        if clips:
            centroids = output.speaker_embeddings
            if centroids is None or len(centroids) < len(labels):
                centroids = np.zeros((len(labels), 1))
            known = match_known_speakers(
                options.known_speaker_names, self._embed(clips), labels, centroids, self._config.match_threshold
            )
        rename = {m.label: m.name for m in known if m.label is not None}
        turns = [
            SpeakerTurn(start=round(turn.start, 3), end=round(turn.end, 3), speaker=rename.get(label, label))
            for turn, _, label in output.speaker_diarization.itertracks(yield_label=True)
        ]
        return Diarization(
            model=self.served_name,
            duration=len(audio) / SAMPLE_RATE,
            speakers=[rename.get(label, label) for label in labels],
            turns=turns,
            known_speakers=known,
            seconds=time.perf_counter() - started,
        )

    def _run(self, audio: np.ndarray, options: DiarizationOptions):
        import torch

        file = {"waveform": torch.from_numpy(audio[None, :]), "sample_rate": SAMPLE_RATE, "uri": "request"}
        with self._lock:
            return self._pipeline(
                file,
                num_speakers=options.num_speakers,
                min_speakers=options.min_speakers,
                max_speakers=options.max_speakers,
            )

    def _embed(self, clips: list[np.ndarray]) -> np.ndarray:
        """Each clip diarized as one speaker; its centroid is its embedding. So a reference is embedded as
        the recording's speakers are (the same model, over the speech the segmentation finds, its pauses
        left out), and the two compare like with like."""
        one = DiarizationOptions(num_speakers=1)
        embeddings = []
        for index, clip in enumerate(clips):
            centroids = self._run(clip, one).speaker_embeddings
            if centroids is None or len(centroids) == 0 or not np.any(centroids[0]):
                raise InvalidRequest(f"known_speaker_references[{index}] holds no speech", param=REFERENCES)
            embeddings.append(centroids[0])
        return np.vstack(embeddings)
