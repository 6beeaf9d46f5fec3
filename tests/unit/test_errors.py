"""The error type, its status table, its OpenAI envelope, and how it crosses processes."""

from __future__ import annotations

import pickle

import pytest

from serve_app.errors import (
    STATUS,
    APIError,
    AuthenticationFailed,
    Conflict,
    ContextLengthExceeded,
    InternalError,
    InvalidRequest,
    NotFound,
    Overloaded,
    PayloadTooLarge,
    PermissionDenied,
    QuotaExceeded,
    RateLimited,
    ServiceUnavailable,
    TokensRateLimited,
    UnsupportedMediaType,
    as_api_error,
    unwrap,
)

EXPECTED = [
    # class, status, type, default code
    (InvalidRequest, 400, "invalid_request_error", None),
    (ContextLengthExceeded, 400, "invalid_request_error", "context_length_exceeded"),
    (NotFound, 404, "invalid_request_error", "model_not_found"),
    (Conflict, 409, "invalid_request_error", "conflict"),
    (PayloadTooLarge, 413, "invalid_request_error", "payload_too_large"),
    (AuthenticationFailed, 401, "invalid_request_error", "invalid_api_key"),
    (UnsupportedMediaType, 415, "invalid_request_error", "unsupported_media_type"),
    (InternalError, 500, "server_error", "internal_error"),
    (ServiceUnavailable, 503, "server_error", "service_unavailable"),
    (Overloaded, 503, "server_error", "server_overloaded"),
    (RateLimited, 429, "requests", "rate_limit_exceeded"),
    (PermissionDenied, 403, "invalid_request_error", "model_not_allowed"),
    (TokensRateLimited, 429, "tokens", "rate_limit_exceeded"),
    (QuotaExceeded, 429, "insufficient_quota", "insufficient_quota"),
]
ERROR_CLASSES = [cls for cls, *_ in EXPECTED]


def _subclasses_in_errors_module(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found |= _subclasses_in_errors_module(sub)
        if sub.__module__ == "serve_app.errors":
            found.add(sub)
    return found


def test_every_api_error_subclass_has_a_status():
    assert _subclasses_in_errors_module(APIError) <= set(STATUS)


def test_this_test_covers_every_subclass():
    assert _subclasses_in_errors_module(APIError) == set(ERROR_CLASSES)


@pytest.mark.parametrize(("cls", "status", "type_", "code"), EXPECTED)
def test_status_type_and_default_code(cls, status, type_, code):
    error = cls("boom")
    assert error.status == status
    assert error.type == type_
    assert error.code == code


def test_explicit_code_overrides_default_code():
    assert NotFound("no such model", code="other_code").code == "other_code"


def test_context_length_exceeded_is_an_invalid_request():
    assert issubclass(ContextLengthExceeded, InvalidRequest)


@pytest.mark.parametrize("cls", ERROR_CLASSES)
def test_envelope_has_the_openai_shape(cls):
    error = cls("something went wrong", param="model", code="c1")
    assert error.envelope().model_dump() == {
        "error": {"message": "something went wrong", "type": cls.type, "param": "model", "code": "c1"}
    }


def test_envelope_keeps_null_param_and_code():
    body = InvalidRequest("bad").envelope().model_dump()
    assert set(body) == {"error"}
    assert body["error"] == {"message": "bad", "type": "invalid_request_error", "param": None, "code": None}


def test_str_of_error_is_its_message():
    assert str(NotFound("model 'x' not found", param="model")) == "model 'x' not found"


@pytest.mark.parametrize("cls", ERROR_CLASSES)
def test_pickle_round_trip_keeps_class_message_param_and_code(cls):
    error = cls("it failed", param="messages", code="some_code")
    restored = pickle.loads(pickle.dumps(error))
    assert type(restored) is cls
    assert restored.message == "it failed"
    assert restored.param == "messages"
    assert restored.code == "some_code"
    assert str(restored) == "it failed"
    assert restored.status == error.status


@pytest.mark.parametrize("cls", ERROR_CLASSES)
def test_pickle_round_trip_keeps_retry_after(cls):
    restored = pickle.loads(pickle.dumps(cls("busy", retry_after_s=2.5)))
    assert restored.retry_after_s == 2.5
    assert restored.headers() == {"Retry-After": "3"}


@pytest.mark.parametrize("cls", ERROR_CLASSES)
def test_pickle_round_trip_keeps_default_code_and_null_param(cls):
    restored = pickle.loads(pickle.dumps(cls("x")))
    assert restored.param is None
    assert restored.code == cls.default_code


class _Wrapper(Exception):
    """Stands in for Ray's RayTaskError: the original exception is on `.cause`."""

    def __init__(self, cause: BaseException | None):
        super().__init__("wrapped")
        self.cause = cause


def test_unwrap_returns_plain_exception_unchanged():
    error = ValueError("x")
    assert unwrap(error) is error


def test_unwrap_follows_one_cause():
    inner = NotFound("missing")
    assert unwrap(_Wrapper(inner)) is inner


def test_unwrap_follows_nested_causes_to_the_innermost():
    inner = PayloadTooLarge("too big")
    assert unwrap(_Wrapper(_Wrapper(_Wrapper(inner)))) is inner


def test_unwrap_stops_when_cause_is_not_an_exception():
    wrapper = _Wrapper(None)
    assert unwrap(wrapper) is wrapper


def test_unwrap_stops_on_self_referencing_cause():
    wrapper = _Wrapper(None)
    wrapper.cause = wrapper
    assert unwrap(wrapper) is wrapper


def test_as_api_error_returns_api_errors_as_they_are():
    error = ContextLengthExceeded("too long", param="prompt")
    assert as_api_error(error) is error


def test_as_api_error_unwraps_an_api_error_from_a_wrapper():
    error = NotFound("no such model", param="model")
    assert as_api_error(_Wrapper(error)) is error


def test_as_api_error_turns_other_exceptions_into_a_500():
    error = as_api_error(RuntimeError("secret: /srv/weights/path password=hunter2"))
    assert isinstance(error, InternalError)
    assert error.status == 500
    assert error.type == "server_error"


def test_as_api_error_hides_the_original_exception_text():
    error = as_api_error(RuntimeError("secret: /srv/weights/path password=hunter2"))
    assert "hunter2" not in error.message
    assert "/srv/weights" not in error.message
    assert "hunter2" not in str(error.envelope().model_dump())


def test_as_api_error_hides_text_of_a_wrapped_non_api_exception():
    error = as_api_error(_Wrapper(KeyError("internal-key-name")))
    assert isinstance(error, InternalError)
    assert "internal-key-name" not in error.message


def test_ray_style_wrapper_subclass_inherits_the_status_of_its_cause():
    # Ray raises RayTaskError(<cls>): a dynamic subclass of the replica's exception class.
    from serve_app.errors import ContextLengthExceeded

    wrapper_type = type("RayTaskError(ContextLengthExceeded)", (ContextLengthExceeded,), {})
    assert wrapper_type("too long").status == 400
