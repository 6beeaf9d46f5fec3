"""A transcript with speakers: the ASR and the Diarizer side by side on one media, then speakers assigned.

Both the Ingress (`/v1/audio/transcriptions`, the app handle's `transcribe`) and the video-summary
pipeline compose the same way, over handles only, so the composition lives here, where both may
import it. The two deployments decode the media each and run at once; the transcript is then
handed back to the ASR, which assigns the turns to segments and words (whisperx's
`assign_word_speakers`) and renders the subtitles with the speakers in them.
"""

from __future__ import annotations

import asyncio
from typing import Any

from serve_app.protocol import DiarizationOptions, Transcript, TranscriptionOptions

# What the ASR need not carry: the Diarizer's fields (reference clips may be large).
_WITHOUT_SPEAKERS: dict[str, Any] = {
    "diarize": False,
    "num_speakers": None,
    "min_speakers": None,
    "max_speakers": None,
    "known_speaker_names": [],
    "known_speaker_references": [],
    "subtitles": None,  # rendered once the speakers are known
}


async def transcribe(asr: Any, diarizer: Any | None, media: bytes | str, options: TranscriptionOptions) -> Transcript:
    """`asr.transcribe`, and with `options.diarize` the Diarizer beside it and its speakers assigned.

    `diarizer` is None when none is served; callers refuse `diarize` before that (a 400 naming it).
    """
    if not options.diarize:
        return await asr.transcribe.remote(media, options)
    assert diarizer is not None, "diarize=True needs a Diarizer; the caller checks"
    asr_options = options.model_copy(update=_WITHOUT_SPEAKERS)
    speaker_options = DiarizationOptions(**options.speaker_fields())
    transcript, diarization = await asyncio.gather(
        asr.transcribe.remote(media, asr_options), diarizer.diarize.remote(media, speaker_options)
    )
    return await asr.attribute_speakers.remote(transcript, diarization, options.subtitles)
