"""What the HTTP tests share: the served names, the fake models behind them (fixtures, which conftest.py
re-exports), and the check every error answer passes."""

from __future__ import annotations

import pytest

from tests.envelopes import assert_envelope
from tests.fakes import FakeASR, FakeDetector, FakeLLM

__all__ = ["ASR", "DETECTOR", "LLM", "asr", "assert_envelope", "detector", "llm"]

LLM = "tiny-llm"
ASR = "fake-whisper"
DETECTOR = "fake-yolo"


@pytest.fixture()
def llm() -> FakeLLM:
    return FakeLLM("Hello there friend", name=LLM)


@pytest.fixture()
def asr() -> FakeASR:
    return FakeASR(ASR)


@pytest.fixture()
def detector() -> FakeDetector:
    return FakeDetector(DETECTOR)
