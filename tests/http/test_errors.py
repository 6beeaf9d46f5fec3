"""Every failure through the real routes is one OpenAI envelope with its status, and the app keeps serving.

The envelope and status table themselves are unit-tested (tests/unit/test_errors.py,
test_backpressure_errors.py); here is what the HTTP layer makes of them.
"""

from __future__ import annotations

import pytest
from ray.serve._private.common import DeploymentID
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

from serve_app.errors import ContextLengthExceeded
from tests.fakes import FakeHandle, FakeLLM
from tests.http.support import ASR, LLM, assert_envelope

CHAT = {"model": LLM, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


def full_queue(status: int, retry_after_s: float = 3) -> BackPressureError:
    return BackPressureError(
        num_queued_requests=1, max_queued_requests=1, status_code=status, retry_after_s=retry_after_s
    )


def raising(exc: Exception):
    def method(*_args, **_kwargs):
        raise exc

    return method


@pytest.fixture()
def http(client):
    yield client
    # Whatever the bad request did, the next one is served.
    assert client.post("/v1/chat/completions", json=CHAT).status_code == 200


@pytest.fixture()
def serve_llm(serve_ingress, backends):
    """An Ingress whose LLM handle is the one given; the next request to a healthy LLM still succeeds."""

    def start(handle: FakeHandle):
        return serve_ingress({**backends["models"], "llm": {LLM: handle}}, backends["services"])

    yield start
    # Every replica here serves the one app Serve froze: what the failure left broken would show.
    healthy = serve_ingress(**backends)
    assert healthy.post("/v1/chat/completions", json=CHAT).status_code == 200


def test_malformed_json_is_400_invalid_json(http):
    broken = b'{"model": "x", "messages": ['
    reply = http.post("/v1/chat/completions", content=broken, headers={"content-type": "application/json"})
    assert_envelope(reply, 400, code="invalid_json")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({**CHAT, "temperature": "hot"}, "temperature"),
        ({"model": LLM}, "messages"),
        ({**CHAT, "n": 0}, "n"),
        ({**CHAT, "messages": [{"role": "robot", "content": "x"}]}, "messages.0.role"),
    ],
    ids=["wrong-type", "missing", "unsupported-value", "nested"],
)
def test_schema_errors_are_400_naming_the_param(http, body, param):
    assert_envelope(http.post("/v1/chat/completions", json=body), 400, param=param)


def test_a_body_that_is_not_an_object_is_400(http):
    assert_envelope(http.post("/v1/completions", json=["not", "an", "object"]), 400)


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/v1/chat/completions", "application/x-www-form-urlencoded"),
        ("/v1/completions", None),
        ("/v1/embeddings", "text/plain"),
        ("/v1/detections", "text/plain"),
    ],
)
def test_wrong_content_type_is_415(http, path, content_type):
    headers = {"content-type": content_type} if content_type else {}
    error = assert_envelope(http.post(path, content=b"model=x", headers=headers), 415, code="unsupported_media_type")
    assert (content_type or "none") in error["message"]


def test_unknown_route_is_404_envelope(http):
    assert_envelope(http.get("/v1/nothing-here"), 404, code="not_found")


def test_wrong_method_is_405_envelope(http):
    assert_envelope(http.get("/v1/chat/completions"), 405)


@pytest.mark.parametrize("stream", [False, True])
def test_unknown_model_is_a_plain_404_on_model_even_when_streamed(http, stream):
    reply = http.post("/v1/chat/completions", json={**CHAT, "model": "gpt-nonexistent", "stream": stream})
    error = assert_envelope(reply, 404, param="model", code="model_not_found")
    assert LLM in error["message"], "says what is served"


def test_an_api_error_from_a_replica_keeps_its_status_param_and_code(serve_llm):
    too_long = ContextLengthExceeded("prompt plus max_tokens is over the context", param="messages")
    http = serve_llm(FakeHandle.of("LLM", chat=raising(too_long)))
    reply = http.post("/v1/chat/completions", json=CHAT)
    error = assert_envelope(reply, 400, param="messages", code="context_length_exceeded")
    assert error["message"] == too_long.message


@pytest.mark.parametrize(
    ("status", "code"), [(503, "server_overloaded"), (429, "rate_limit_exceeded")], ids=["503", "429"]
)
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_a_full_queue_is_the_envelope_with_retry_after_not_serves_plain_text(serve_llm, llm, status, code, stream):
    http = serve_llm(FakeHandle(llm, name="LLM", refusal=full_queue(status)))
    reply = http.post("/v1/chat/completions", json={**CHAT, "stream": stream})
    assert_envelope(reply, status, code=code)
    assert reply.headers["retry-after"] == "3"


def test_a_full_queue_behind_a_pipeline_is_the_same_envelope(serve_ingress, backends):
    # The pipeline replica's own handle call was refused: it reaches the ingress wrapped by Ray.
    pipeline = FakeHandle.of("VideoSummary", summarize=raising(full_queue(503, 2)))
    http = serve_ingress(backends["models"], {"video_summary": pipeline})
    reply = http.post("/v1/pipelines/video-summary", files={"file": ("a.mp4", b"x")})
    assert_envelope(reply, 503, code="server_overloaded")
    assert reply.headers["retry-after"] == "2"


def test_a_failed_deployment_is_503_without_retry_after(serve_ingress, backends, asr):
    unavailable = DeploymentUnavailableError(DeploymentID(name="ASR", app_name="default"))
    models = {**backends["models"], "asr": {ASR: FakeHandle(asr, name="ASR", refusal=unavailable)}}
    http = serve_ingress(models, backends["services"])
    reply = http.post("/v1/audio/transcriptions", data={"model": ASR}, files={"file": ("a.wav", b"x")})
    assert_envelope(reply, 503, code="deployment_unavailable")
    assert "retry-after" not in reply.headers


def test_a_service_that_is_not_configured_is_503(http):
    assert_envelope(http.get("/v1/collections"), 503, code="service_unavailable")


def test_an_unexpected_exception_is_a_500_that_hides_its_text(serve_llm):
    http = serve_llm(FakeHandle.of("LLM", chat=raising(KeyError("/srv/weights secret-internal-name"))))
    error = assert_envelope(http.post("/v1/chat/completions", json=CHAT), 500, code="internal_error")
    assert error["type"] == "server_error"
    assert "secret" not in error["message"] and "/srv" not in error["message"]


def test_the_app_keeps_serving_after_a_replica_error(serve_ingress, backends):
    # One failing call, then the same handle answers: nothing in the ingress is left broken.
    llm = FakeLLM(name=LLM)
    calls = iter([KeyError("boom"), None])

    def chat(request):
        failure = next(calls)
        if failure:
            raise failure
        return llm.chat(request)

    http = serve_ingress({**backends["models"], "llm": {LLM: FakeHandle.of("LLM", chat=chat)}})
    assert_envelope(http.post("/v1/chat/completions", json=CHAT), 500)
    assert http.post("/v1/chat/completions", json=CHAT).status_code == 200


def test_a_405_names_every_method_the_path_allows(client):
    reply = client.request("PATCH", "/v1/collections/kb")
    assert reply.status_code == 405 and reply.headers["allow"] == "DELETE, GET"
    assert client.request("PUT", "/v1/collections").headers["allow"] == "GET, POST"


def test_the_schema_documents_what_is_sent_and_nothing_else(client):
    schema = client.get("/openapi.json").json()
    chat = schema["paths"]["/v1/chat/completions"]["post"]
    assert "422" not in chat["responses"] and {"400", "413", "415", "429", "503"} <= set(chat["responses"])
    assert "text/event-stream" in chat["responses"]["200"]["content"]
    assert "multipart/form-data" in schema["paths"]["/v1/detections"]["post"]["requestBody"]["content"]
    form = schema["components"]["schemas"]["Body_audio_transcriptions_v1_audio_transcriptions_post"]
    assert form["properties"]["language"] == {"type": "string", "title": "Language"}, "a form field is never null"
