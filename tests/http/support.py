"""What the HTTP tests share besides the fixtures: the served names, and the check every error answer passes."""

from __future__ import annotations

from tests.envelopes import assert_envelope

__all__ = ["ASR", "DETECTOR", "LLM", "assert_envelope"]

LLM = "tiny-llm"
ASR = "fake-whisper"
DETECTOR = "fake-yolo"
