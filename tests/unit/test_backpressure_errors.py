"""Serve's refusals (full queue, failed deployment) become OpenAI errors with Retry-After, streams included."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse
from fastapi.testclient import TestClient
from ray.exceptions import ActorDiedError, RayTaskError
from ray.serve._private.common import DeploymentID
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

from serve_app.errors import APIError, InternalError, Overloaded, RateLimited, ServiceUnavailable, as_api_error
from serve_app.http.errors import ServeRejectionsAsAPIErrors, error_response
from serve_app.http.sse import sse_response
from serve_app.protocol import Completion, CompletionChoice


def rejection(status_code: int = 503, retry_after_s: float | None = 2.0) -> BackPressureError:
    return BackPressureError(
        num_queued_requests=1, max_queued_requests=1, status_code=status_code, retry_after_s=retry_after_s
    )


def ray_wrapped(exc: BaseException) -> BaseException:
    # What a pipeline replica's failed handle call looks like at the ingress.
    return RayTaskError("run", "Traceback ...", exc).as_instanceof_cause()


def test_full_queue_with_503_is_overloaded_with_retry_after():
    error = as_api_error(rejection(503, 2.0))
    assert type(error) is Overloaded
    assert (error.status, error.type, error.code) == (503, "server_error", "server_overloaded")
    assert error.headers() == {"Retry-After": "2"}
    assert "Retry after 2 s" in error.message


def test_full_queue_with_429_is_openais_rate_limit_shape():
    error = as_api_error(rejection(429, 0.4))
    assert type(error) is RateLimited
    assert (error.status, error.type, error.code) == (429, "requests", "rate_limit_exceeded")
    assert error.headers() == {"Retry-After": "1"}, "rounded up, never a retry earlier than configured"


def test_full_queue_without_retry_after_sends_no_header():
    error = as_api_error(rejection(503, None))
    assert type(error) is Overloaded
    assert error.headers() is None


def test_rejection_wrapped_by_ray_keeps_status_and_retry_after():
    wrapped = ray_wrapped(rejection(429, 5))
    assert isinstance(wrapped, BackPressureError), "precondition: Ray's wrapper is a subclass of the cause"
    error = as_api_error(wrapped)
    assert type(error) is RateLimited
    assert error.headers() == {"Retry-After": "5"}


def test_failed_deployment_is_a_503_without_retry_after():
    error = as_api_error(DeploymentUnavailableError(DeploymentID(name="LLM", app_name="default")))
    assert type(error) is ServiceUnavailable
    assert (error.status, error.code) == (503, "deployment_unavailable")
    assert error.headers() is None
    assert "LLM" in error.message


@pytest.mark.parametrize("wrap", [lambda e: e, ray_wrapped], ids=["direct", "through-a-pipeline"])
def test_a_replica_lost_under_the_request_is_a_retryable_503(wrap):
    # What the multi-node test saw when a worker node went away with requests in flight.
    error = as_api_error(wrap(ActorDiedError()))
    assert type(error) is ServiceUnavailable
    assert (error.status, error.code) == (503, "replica_lost")
    assert error.headers() == {"Retry-After": "1"}


def test_other_exceptions_still_become_a_500():
    assert type(as_api_error(RuntimeError("x"))) is InternalError


def chunk(text: str) -> Completion:
    return Completion(id="cmpl-1", created=0, model="m", choices=[CompletionChoice(text=text)])


@pytest.fixture(scope="module")
def client() -> TestClient:
    app = FastAPI()
    app.router.route_class = ServeRejectionsAsAPIErrors
    app.add_exception_handler(APIError, lambda _, exc: error_response(exc))
    # What Serve registers on an ingress app: plain-text answers that would otherwise win.
    for serve_exc in (BackPressureError, DeploymentUnavailableError):
        app.add_exception_handler(serve_exc, lambda _, exc: PlainTextResponse("plain", status_code=503))

    @app.post("/full/{status}")
    async def full(status: int) -> dict:
        raise rejection(status, 3)

    @app.post("/wrapped")
    async def wrapped() -> dict:
        raise ray_wrapped(rejection(503, 3))

    @app.post("/stream-rejected")
    async def stream_rejected():
        async def chunks():
            raise rejection(429, 3)
            yield chunk("never")

        return await sse_response(chunks())

    @app.post("/stream-ok")
    async def stream_ok():
        async def chunks():
            yield chunk("a")

        return await sse_response(chunks())

    @app.post("/unavailable")
    async def unavailable() -> dict:
        raise DeploymentUnavailableError(DeploymentID(name="ASR", app_name="default"))

    return TestClient(app)


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/full/503", 503, "server_overloaded"),
        ("/full/429", 429, "rate_limit_exceeded"),
        ("/wrapped", 503, "server_overloaded"),
        ("/stream-rejected", 429, "rate_limit_exceeded"),
    ],
)
def test_route_answers_a_full_queue_with_the_envelope_and_retry_after(client, path, status, code):
    reply = client.post(path)
    assert reply.status_code == status
    assert reply.headers["retry-after"] == "3"
    assert reply.headers["content-type"] == "application/json"
    assert reply.json()["error"]["code"] == code
    assert set(reply.json()["error"]) == {"message", "type", "param", "code"}


def test_route_answers_a_failed_deployment_with_a_503_envelope(client):
    reply = client.post("/unavailable")
    assert reply.status_code == 503
    assert "retry-after" not in reply.headers
    assert reply.json()["error"]["code"] == "deployment_unavailable"


def test_a_stream_that_starts_is_still_a_200_event_stream(client):
    reply = client.post("/stream-ok")
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/event-stream")
    assert reply.text.endswith("data: [DONE]\n\n")
