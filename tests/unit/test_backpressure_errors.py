"""Serve's refusals (full queue, failed deployment, lost replica) become OpenAI errors with Retry-After.

What the routes answer with them, streams included, is in tests/http/test_errors.py.
"""

from __future__ import annotations

import pytest
from ray.exceptions import ActorDiedError
from ray.serve._private.common import DeploymentID
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

from serve_app.errors import InternalError, Overloaded, RateLimited, ServiceUnavailable, as_api_error
from tests.fakes import as_delivered_by_ray


def rejection(status_code: int = 503, retry_after_s: float | None = 2.0) -> BackPressureError:
    return BackPressureError(
        num_queued_requests=1, max_queued_requests=1, status_code=status_code, retry_after_s=retry_after_s
    )


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
    wrapped = as_delivered_by_ray(rejection(429, 5))
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


@pytest.mark.parametrize("wrap", [lambda e: e, as_delivered_by_ray], ids=["direct", "through-a-pipeline"])
def test_a_replica_lost_under_the_request_is_a_retryable_503(wrap):
    # What the multi-node test saw when a worker node went away with requests in flight.
    error = as_api_error(wrap(ActorDiedError()))
    assert type(error) is ServiceUnavailable
    assert (error.status, error.code) == (503, "replica_lost")
    assert error.headers() == {"Retry-After": "1"}


def test_other_exceptions_still_become_a_500():
    assert type(as_api_error(RuntimeError("x"))) is InternalError
