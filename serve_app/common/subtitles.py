"""SRT and WebVTT that are always valid, whatever timings the ASR produced.

Cues are numbered from 1, times never go backwards, never overlap, never pass the
media's duration, and every cue lasts at least a millisecond. Text is wrapped at
`max_line_chars`; a segment with more than `max_lines` lines becomes several cues
sharing its time span in proportion to their text.

A diarized segment's speaker travels with its cues: WebVTT writes it as a voice span
(`<v SPEAKER_00>text`), SRT, which has no such markup, as a `SPEAKER_00: ` prefix. A cue
without a speaker is rendered exactly as before diarization existed.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

from serve_app.protocol import TranscriptionSegment


@dataclass(frozen=True)
class Cue:
    start_ms: int
    end_ms: int
    lines: tuple[str, ...]
    speaker: str | None = None


def build_cues(
    segments: list[TranscriptionSegment], duration: float, *, max_line_chars: int = 42, max_lines: int = 2
) -> list[Cue]:
    limit_ms = max(0, int(duration * 1000))
    cues: list[Cue] = []
    previous_end = 0
    for segment in segments:
        lines = textwrap.wrap(" ".join(segment.text.split()), max_line_chars, break_long_words=True)
        if not lines:
            continue
        start = max(previous_end, _ms(segment.start))
        end = min(limit_ms, max(_ms(segment.end), start))
        groups = [tuple(lines[i : i + max_lines]) for i in range(0, len(lines), max_lines)]
        weights = [sum(len(line) for line in group) for group in groups]
        total = sum(weights)
        cursor = start
        done = 0
        for group, weight in zip(groups, weights, strict=True):
            done += weight
            # Cumulative, so rounding never drifts: the last piece ends exactly at the segment's end.
            piece_end = start + round((end - start) * done / total)
            piece_end = min(limit_ms, max(piece_end, cursor + 1))
            if piece_end <= cursor:  # no room left inside the media: the text cannot be shown
                break
            cues.append(Cue(cursor, piece_end, group, segment.speaker))
            cursor = piece_end
        previous_end = cursor
    return cues


def render_srt(cues: list[Cue]) -> str:
    blocks = [
        f"{i}\n{_timestamp(c.start_ms, ',')} --> {_timestamp(c.end_ms, ',')}\n" + "\n".join(_srt_lines(c))
        for i, c in enumerate(cues, start=1)
    ]
    return "\n\n".join(blocks) + "\n" if blocks else ""


def render_vtt(cues: list[Cue]) -> str:
    blocks = [
        f"{i}\n{_timestamp(c.start_ms, '.')} --> {_timestamp(c.end_ms, '.')}\n" + "\n".join(_vtt_lines(c))
        for i, c in enumerate(cues, start=1)
    ]
    return "WEBVTT\n\n" + "\n\n".join(blocks) + ("\n" if blocks else "")


def _srt_lines(cue: Cue) -> list[str]:
    lines = list(cue.lines)
    if cue.speaker is not None:
        lines[0] = f"{_one_line(cue.speaker)}: {lines[0]}"
    return lines


def _vtt_lines(cue: Cue) -> list[str]:
    lines = _vtt_safe(cue.lines)
    if cue.speaker is not None:
        # A voice span's annotation ends at ">": escape it (and & and <) like cue text.
        voice = _vtt_escape(_one_line(cue.speaker)).replace(">", "&gt;")
        lines[0] = f"<v {voice}>{lines[0]}"
    return lines


def _one_line(text: str) -> str:
    # A name from a request must not break a cue: no newlines (an empty line ends an SRT or VTT cue).
    return " ".join(text.split())


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;")


def _vtt_safe(lines: tuple[str, ...]) -> list[str]:
    # "-->" inside cue text ends the cue's payload for a WebVTT parser; & and < start markup.
    return [_vtt_escape(line).replace("-->", "--&gt;") for line in lines]


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))


def _timestamp(ms: int, separator: str) -> str:
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{separator}{millis:03d}"
