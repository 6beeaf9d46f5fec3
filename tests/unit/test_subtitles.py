"""SRT/VTT stay valid whatever timings come in: parsed back with real parsers."""

from __future__ import annotations

import io

import pytest
import srt
import webvtt

from serve_app.common.subtitles import build_cues, render_srt, render_vtt
from serve_app.protocol import TranscriptionSegment


def seg(i: int, start: float, end: float, text: str) -> TranscriptionSegment:
    return TranscriptionSegment(id=i, start=start, end=end, text=text)


MESSY = [
    seg(0, 0.0, 2.5, " Hello there, this is the first segment of a rather long line of speech to wrap."),
    seg(1, 2.0, 1.5, " overlapping and backwards"),  # starts before the previous end, ends before it starts
    seg(2, 3.0, 3.0, "zero length"),
    seg(3, 4.0, 4.5, "   "),  # nothing to show
    seg(4, 9.0, 12.0, "runs past the end of the media --> <b>&"),
    seg(5, 12.0, 13.0, "entirely after the end"),
]


def times(cues):
    return [(c.start_ms, c.end_ms) for c in cues]


@pytest.mark.parametrize("max_line_chars,max_lines", [(42, 2), (12, 1), (80, 3)])
def test_cues_are_monotonic_non_overlapping_inside_duration(max_line_chars, max_lines):
    cues = build_cues(MESSY, 10.0, max_line_chars=max_line_chars, max_lines=max_lines)
    previous = 0
    for start, end in times(cues):
        assert previous <= start < end <= 10_000
        previous = end
    for cue in cues:
        assert len(cue.lines) <= max_lines
        assert all(len(line) <= max_line_chars for line in cue.lines)


def test_srt_parses_back_with_numbering_and_comma_times():
    text = render_srt(build_cues(MESSY, 10.0, max_line_chars=20))
    subtitles = list(srt.parse(text))
    assert [s.index for s in subtitles] == list(range(1, len(subtitles) + 1))
    assert "00:00:00,000 --> " in text
    assert srt.compose(subtitles, reindex=False).strip() == text.strip()
    assert "Hello there," in subtitles[0].content


def test_vtt_parses_back_with_dot_times_and_escaped_text():
    text = render_vtt(build_cues(MESSY, 10.0))
    assert text.startswith("WEBVTT\n\n") and "00:00:00.000 --> " in text
    captions = webvtt.from_buffer(io.StringIO(text))
    assert len(captions) == len(build_cues(MESSY, 10.0))
    assert "--&gt;" in text and "&lt;b>&amp;" in text


def test_long_segment_splits_into_cues_sharing_its_span():
    words = " ".join(f"word{i}" for i in range(60))
    cues = build_cues([seg(0, 1.0, 7.0, words)], 10.0, max_line_chars=30, max_lines=2)
    assert len(cues) > 1
    assert cues[0].start_ms == 1000 and cues[-1].end_ms == 7000
    assert " ".join(line for c in cues for line in c.lines) == words


def test_hours_format():
    cues = build_cues([seg(0, 3725.5, 3726.25, "late")], 4000.0)
    assert "01:02:05,500 --> 01:02:06,250" in render_srt(cues)


def test_nothing_to_show_is_empty_but_valid():
    assert render_srt([]) == ""
    assert render_vtt([]) == "WEBVTT\n\n"
