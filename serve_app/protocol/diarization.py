"""Speaker diarization contracts: who spoke when, asked of the Diarizer and returned by it.

The Diarizer runs beside the ASR on the same media; its turns are then assigned to the
transcript's segments and words. The speaker-count hints and the known speakers (names with
short reference clips, OpenAI's `known_speaker_names[]` / `known_speaker_references[]`) are
checked here, once, so a contradiction is a 400 naming its field whichever caller sent it;
the limits that are the server's (a cap on speakers, a reference's length) are the Diarizer's.
"""

from __future__ import annotations

from pydantic import BaseModel, Field, model_validator

from serve_app.protocol.common import _Request, field_error


class DiarizationOptions(_Request):
    """What a caller may ask of the Diarizer (also the speaker fields of a transcription request)."""

    num_speakers: int | None = Field(default=None, ge=1, description="extension: exactly this many speakers.")
    min_speakers: int | None = Field(default=None, ge=1, description="extension: at least this many speakers.")
    max_speakers: int | None = Field(default=None, ge=1, description="extension: at most this many speakers.")
    known_speaker_names: list[str] = Field(
        default_factory=list, description="Names for the speakers heard in `known_speaker_references`, in order."
    )
    known_speaker_references: list[str | bytes] = Field(
        default_factory=list,
        description="One short clip per name: an audio data URL (as OpenAI takes them), or raw bytes from Python.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> DiarizationOptions:
        name = type(self).__name__
        low, high, num = self.min_speakers, self.max_speakers, self.num_speakers
        if low is not None and high is not None and low > high:
            raise field_error(name, "min_speakers", f"min_speakers ({low}) is above max_speakers ({high})", low)
        if num is not None and ((low is not None and num < low) or (high is not None and num > high)):
            raise field_error(
                name, "num_speakers", f"num_speakers ({num}) is outside [min_speakers, max_speakers]", num
            )
        names, references = self.known_speaker_names, self.known_speaker_references
        if len(names) > len(references):
            raise field_error(
                name,
                "known_speaker_names",
                f"{len(names)} known_speaker_names but {len(references)} known_speaker_references: one clip per name",
                names,
            )
        if len(references) > len(names):
            raise field_error(
                name,
                "known_speaker_references",
                f"{len(references)} known_speaker_references but {len(names)} known_speaker_names: one name per clip",
                len(references),
            )
        if len(set(names)) < len(names) or any(not n.strip() for n in names):
            raise field_error(name, "known_speaker_names", "known_speaker_names must be distinct and not blank", names)
        return self

    def speaker_fields(self) -> dict:
        """These fields alone, for a subclass (the transcription options) to hand to the Diarizer."""
        return {key: getattr(self, key) for key in DiarizationOptions.model_fields}


class SpeakerTurn(BaseModel):
    start: float
    end: float
    speaker: str = Field(description="SPEAKER_00, SPEAKER_01, ... or the known speaker's name.")


class KnownSpeakerMatch(BaseModel):
    name: str
    label: str | None = Field(description="The diarized speaker it named; None: no speaker was close enough.")
    similarity: float = Field(description="Cosine similarity of the reference's embedding to that speaker's.")


class Diarization(BaseModel):
    """What the Diarizer returns: speaker turns (overlaps included) and the speakers, sorted by label."""

    model: str
    duration: float = Field(description="Seconds of decoded audio.")
    speakers: list[str]
    turns: list[SpeakerTurn]
    known_speakers: list[KnownSpeakerMatch] = Field(default_factory=list)
    seconds: float = Field(default=0.0, description="Wall seconds the diarization took (decode included).")
