"""What a response used, read off the bytes the ingress sends: tokens, audio seconds, the model that answered.

A JSON answer carries OpenAI's `usage` (and a transcript its `duration`); a stream carries it in
its usage chunk when the client asked for `stream_options.include_usage`, and otherwise each
content chunk is counted as one token (what the engines here send per chunk), over the prompt
estimate made at admission. The variant is the `x-model-variant` header when the ingress routed
by alias, else the answer's `model`.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import Message

_MAX_JSON_BYTES = 4 << 20
_USAGE = b'"usage":{'


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


class UsageCapture:
    def __init__(self, prompt_estimate: int):
        self.prompt_estimate = prompt_estimate
        self.status = 0
        self.variant: str | None = None
        self.model: str | None = None
        self.prompt_tokens: int | None = None
        self.completion_tokens = 0
        self.audio_seconds = 0.0
        self._kind = "other"
        self._json: list[bytes] = []
        self._json_bytes = 0
        self._pending = b""

    def start(self, message: Message) -> None:
        self.status = message["status"]
        for name, value in message.get("headers", ()):
            if name == b"x-model-variant":
                self.variant = value.decode("latin-1")
            elif name == b"content-type":
                media = value.split(b";")[0].strip().lower()
                self._kind = {b"application/json": "json", b"text/event-stream": "sse"}.get(media, "other")

    def body(self, chunk: bytes) -> None:
        if self.status >= 400 or not chunk:
            return
        if self._kind == "json" and self._json_bytes < _MAX_JSON_BYTES:
            self._json.append(chunk)
            self._json_bytes += len(chunk)
        elif self._kind == "sse":
            lines = (self._pending + chunk).split(b"\n")
            self._pending = lines.pop()
            for line in lines:
                self._sse_line(line)

    def _sse_line(self, line: bytes) -> None:
        if not line.startswith(b"data: {"):
            return
        if self.model is None or _USAGE in line:
            try:
                event = json.loads(line[6:])
            except ValueError:
                return
            self._answer(event)
            if isinstance(event.get("usage"), dict):
                return
        if b'"content":"' in line and b'"content":""' not in line or b'"text":"' in line and b'"text":""' not in line:
            self.completion_tokens += 1

    def _answer(self, answer: Any) -> None:
        if not isinstance(answer, dict):
            return
        if self.model is None and isinstance(answer.get("model"), str):
            self.model = answer["model"]
        usage = answer.get("usage")
        if isinstance(usage, dict):
            self.prompt_tokens = _int(usage.get("prompt_tokens"))
            # Embeddings report prompt and total only.
            self.completion_tokens = _int(usage.get("completion_tokens"))
            if usage.get("type") == "duration" and isinstance(usage.get("seconds"), int | float):
                self.audio_seconds = float(usage["seconds"])
        if isinstance(answer.get("duration"), int | float) and not isinstance(answer["duration"], bool):
            self.audio_seconds = float(answer["duration"])

    def finish(self) -> None:
        if self._json:
            try:
                self._answer(json.loads(b"".join(self._json)))
            except ValueError:
                pass
            self._json = []

    @property
    def prompt(self) -> int:
        if self.status >= 400:
            return 0
        return self.prompt_estimate if self.prompt_tokens is None else self.prompt_tokens
