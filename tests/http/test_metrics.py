"""The request metrics through the real Ingress: every answer counted with bounded labels, streams timed to the end.

The middleware itself is serve_app/http/metrics.py; what it records is caught by RecordedMetrics.
"""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import pytest

from serve_app.http.metrics import RequestMetrics
from serve_app.protocol import ChatCompletionRequest
from tests.fakes import FakeHandle, FakeLLM, RecordedMetrics
from tests.http.support import ASR, LLM

CHAT = {"model": LLM, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


@pytest.fixture()
def recorded(monkeypatch) -> RecordedMetrics:
    return RecordedMetrics(monkeypatch)


def requests(recorded: RecordedMetrics) -> list[dict[str, str]]:
    return [tags for _, tags in recorded.tagged("mms_http_requests")]


def test_a_served_request_is_counted_and_timed_under_its_route_and_model(client, recorded):
    assert client.post("/v1/chat/completions", json=CHAT).status_code == 200
    assert requests(recorded) == [
        {"route": "/v1/chat/completions", "model": LLM, "status": "200", "error_type": "none"}
    ]
    [(seconds, tags)] = recorded.tagged("mms_http_request_duration_seconds")
    assert tags == {"route": "/v1/chat/completions", "model": LLM} and seconds > 0


def test_the_route_is_its_template_and_an_unmatched_path_is_other(client, recorded):
    client.get("/v1/collections/kitchen/items/photo-1")  # no store configured: 503
    client.get("/v1/secret/path/of/a/scanner")
    client.get("/health")
    assert [(t["route"], t["status"], t["error_type"]) for t in requests(recorded)] == [
        ("/v1/collections/{name}/items/{item_id}", "503", "server_error"),
        ("other", "404", "invalid_request_error"),
        ("/health", "200", "none"),
    ]
    assert {t["model"] for t in requests(recorded)} == {"none"}


@pytest.mark.parametrize(
    ("model", "label"),
    [("whisper-1", "whisper-1"), (ASR, ASR), ("gpt-4o' OR 1=1", "unknown")],
)
def test_the_model_is_a_served_id_an_alias_or_unknown_never_the_raw_value(client, recorded, model, label):
    client.post("/v1/audio/transcriptions", data={"model": model}, files={"file": ("a.wav", b"RIFF")})
    [tags] = requests(recorded)
    assert tags["model"] == label
    assert tags["status"] == ("404" if label == "unknown" else "200")


def test_refusals_before_and_by_the_routes_are_counted(serve_ingress, backends, recorded):
    client = serve_ingress(**backends, max_request_bytes=1024)
    client.post("/v1/chat/completions", json={**CHAT, "messages": [{"role": "user", "content": "x" * 2000}]})
    client.post("/v1/chat/completions", content="model=x", headers={"content-type": "text/plain"})
    client.post("/v1/chat/completions", json={"messages": []})
    assert [(t["route"], t["status"], t["model"]) for t in requests(recorded)] == [
        ("/v1/chat/completions", "413", "none"),  # BodySizeLimit answered before the router ran
        ("/v1/chat/completions", "415", "none"),
        ("/v1/chat/completions", "400", "none"),  # no model field
    ]
    assert {t["error_type"] for t in requests(recorded)} == {"invalid_request_error"}


def test_an_error_raised_in_a_replica_is_counted_as_the_500_it_becomes(serve_ingress, backends, recorded):
    def chat(_request):
        raise KeyError("engine lost its weights")

    client = serve_ingress({**backends["models"], "llm": {LLM: FakeHandle.of("LLM", chat=chat)}})
    assert client.post("/v1/chat/completions", json=CHAT).status_code == 500
    assert requests(recorded) == [
        {"route": "/v1/chat/completions", "model": LLM, "status": "500", "error_type": "server_error"}
    ]


class SlowLLM(FakeLLM):
    """Streams one word every `gap_s`: the stream's last byte comes long after its first."""

    gap_s = 0.05

    async def chat_stream(self, request: ChatCompletionRequest):
        async for chunk in super().chat_stream(request):
            await asyncio.sleep(self.gap_s)
            yield chunk


def test_a_stream_is_timed_to_its_last_byte(serve_ingress, backends, recorded):
    llm = SlowLLM("one two three four", name=LLM)
    client = serve_ingress({**backends["models"], "llm": {LLM: FakeHandle(llm, name="LLM")}})
    started = time.perf_counter()
    with client.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as reply:
        body = "".join(reply.iter_text())
        elapsed = time.perf_counter() - started
    assert body.endswith("data: [DONE]\n\n")
    [(seconds, _)] = recorded.tagged("mms_http_request_duration_seconds")
    # Six chunks (role, four words, finish) each after a gap: the first is out after one gap.
    assert 6 * SlowLLM.gap_s <= seconds <= elapsed
    assert requests(recorded)[0]["status"] == "200"


def _scope() -> dict:
    app = SimpleNamespace(state=SimpleNamespace(served_models=frozenset()), router=SimpleNamespace(routes=[]))
    return {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": [], "app": app}


async def test_a_stream_the_client_left_is_recorded_once_at_the_disconnect(recorded):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
        assert (await receive())["type"] == "http.disconnect"  # Starlette then stops the stream

    async def receive():
        return {"type": "http.disconnect"}

    async def send(_message):
        pass

    await RequestMetrics(app, served_models=frozenset)(_scope(), receive, send)
    assert requests(recorded) == [{"route": "other", "model": "none", "status": "200", "error_type": "none"}]


async def test_a_request_cancelled_before_answering_is_a_499(recorded):
    async def app(scope, receive, send):
        raise asyncio.CancelledError  # Serve cancels a request whose client went away

    with pytest.raises(asyncio.CancelledError):
        await RequestMetrics(app, served_models=frozenset)(_scope(), None, None)
    assert [t["status"] for t in requests(recorded)] == ["499"]
