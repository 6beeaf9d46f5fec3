"""One error type, one status table, one OpenAI error envelope.

Deployments raise these without knowing about HTTP; the ingress turns any of
them into `{"error": {"message", "type", "param", "code"}}` with the status from
`STATUS`. Errors cross Ray handles wrapped in `RayTaskError`; `unwrap` recovers them.
"""

from __future__ import annotations

import math
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from ray.exceptions import RayActorError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

from serve_app.protocol import ErrorDetail, ErrorResponse

RequestT = TypeVar("RequestT", bound=BaseModel)


class APIError(Exception):
    type: str = "server_error"
    default_code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after_s: float | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code or self.default_code
        self.retry_after_s = retry_after_s

    # Exceptions are pickled to cross Ray actor boundaries; keyword-only args
    # are not restored by the default reduce, so spell the round-trip out.
    def __reduce__(self):
        return (_rebuild, (type(self), self.message, self.param, self.code, self.retry_after_s))

    @property
    def status(self) -> int:
        # By MRO, so subclasses (and Ray's RayTaskError(<cls>) wrappers) inherit a status.
        return next((STATUS[c] for c in type(self).__mro__ if c in STATUS), 500)

    def envelope(self) -> ErrorResponse:
        return ErrorResponse(error=ErrorDetail(message=self.message, type=self.type, param=self.param, code=self.code))

    def headers(self) -> dict[str, str] | None:
        """HTTP headers that go with the envelope: `Retry-After` when the error says when to come back."""
        if self.retry_after_s is None:
            return None
        # RFC 9110 delay-seconds is a whole number: round up, never suggest retrying early.
        return {"Retry-After": str(max(0, math.ceil(self.retry_after_s)))}


def _rebuild(
    cls: type[APIError], message: str, param: str | None, code: str | None, retry_after_s: float | None = None
) -> APIError:
    return cls(message, param=param, code=code, retry_after_s=retry_after_s)


class InvalidRequest(APIError):
    type = "invalid_request_error"


class ContextLengthExceeded(InvalidRequest):
    default_code = "context_length_exceeded"


class AuthenticationFailed(APIError):
    type = "invalid_request_error"
    default_code = "invalid_api_key"


class PermissionDenied(APIError):
    """An authenticated key asked for what it may not use (a model outside its `models`)."""

    type = "invalid_request_error"
    default_code = "model_not_allowed"


class NotFound(APIError):
    type = "invalid_request_error"
    default_code = "model_not_found"


class Conflict(APIError):
    """The request is well formed but the resource's state refuses it (cancelling a finished batch)."""

    type = "invalid_request_error"
    default_code = "conflict"


class UnsupportedMediaType(APIError):
    type = "invalid_request_error"
    default_code = "unsupported_media_type"


class PayloadTooLarge(APIError):
    type = "invalid_request_error"
    default_code = "payload_too_large"


class ServiceUnavailable(APIError):
    type = "server_error"
    default_code = "service_unavailable"


class Overloaded(ServiceUnavailable):
    """A deployment's queue is full (Serve's `max_queued_requests`): come back after `retry_after_s`."""

    default_code = "server_overloaded"


class RateLimited(APIError):
    """The same rejection where the operator chose 429 (`backpressure_config.status_code`); OpenAI's 429 shape."""

    type = "requests"
    default_code = "rate_limit_exceeded"


class TokensRateLimited(RateLimited):
    """A key's tokens per minute are spent; OpenAI's type for it is `tokens`."""

    type = "tokens"


class QuotaExceeded(RateLimited):
    """A key's budget is spent: OpenAI's 429 `insufficient_quota`, which waiting does not fix."""

    type = "insufficient_quota"
    default_code = "insufficient_quota"


class InternalError(APIError):
    type = "server_error"
    default_code = "internal_error"


STATUS: dict[type[APIError], int] = {
    InvalidRequest: 400,
    ContextLengthExceeded: 400,
    AuthenticationFailed: 401,
    PermissionDenied: 403,
    NotFound: 404,
    Conflict: 409,
    PayloadTooLarge: 413,
    UnsupportedMediaType: 415,
    RateLimited: 429,
    TokensRateLimited: 429,
    QuotaExceeded: 429,
    InternalError: 500,
    ServiceUnavailable: 503,
    Overloaded: 503,
}


def unwrap(exc: BaseException) -> BaseException:
    """The exception a replica raised, whether or not Ray wrapped it."""
    seen = {id(exc)}
    cause = getattr(exc, "cause", None)
    while isinstance(cause, BaseException) and id(cause) not in seen:
        seen.add(id(cause))
        exc, cause = cause, getattr(cause, "cause", None)
    return exc


def as_api_error(exc: BaseException) -> APIError:
    """Map anything raised while serving a request to an APIError, hiding internals."""
    exc = unwrap(exc)
    if isinstance(exc, APIError):
        return exc
    rejection = from_serve_rejection(exc)
    if rejection is not None:
        return rejection
    return InternalError(f"internal error while serving the request ({type(exc).__name__})")


# Serve routes a retry to a live replica at once; a second lets a node's replicas drop out of routing.
REPLICA_LOST_RETRY_AFTER_S = 1.0


def from_serve_rejection(exc: BaseException) -> APIError | None:
    """Serve's own refusals of a handle call, as the API errors a client can act on (None for anything else).

    `BackPressureError`: the callee's queue at this caller is full; it carries the status (503 or 429)
    and `Retry-After` from the callee's `backpressure_config`. `DeploymentUnavailableError`: the callee
    failed to deploy; no Retry-After, since waiting does not fix a broken deployment. `RayActorError`:
    the replica died under the request (its node or process was lost); a retry goes to another replica.
    """
    exc = unwrap(exc)
    if isinstance(exc, BackPressureError):
        cls = RateLimited if exc.status_code == 429 else Overloaded
        wait = f" Retry after {math.ceil(exc.retry_after_s)} s." if exc.retry_after_s is not None else ""
        return cls(f"The server is overloaded: the request queue is full.{wait}", retry_after_s=exc.retry_after_s)
    if isinstance(exc, DeploymentUnavailableError):
        return ServiceUnavailable(exc.message, code="deployment_unavailable")
    if isinstance(exc, RayActorError):
        return ServiceUnavailable(
            "The replica serving this request was lost (its node or process died); retry it.",
            code="replica_lost",
            retry_after_s=REPLICA_LOST_RETRY_AFTER_S,
        )
    return None


def parse_request(model_type: type[RequestT], value: RequestT | dict) -> RequestT:
    """Accept a protocol object or its dict form (handy from notebooks); 400 on bad fields."""
    if isinstance(value, model_type):
        return value
    try:
        return model_type.model_validate(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        raise InvalidRequest(f"{first['msg']} (at '{param}')", param=param) from None
