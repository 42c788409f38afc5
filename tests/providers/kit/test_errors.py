"""The typed error hierarchy: what each class tells a caller."""

from __future__ import annotations

import pytest

from providers_app.kit import errors


@pytest.mark.parametrize(
    ("cls", "retryable", "permanent"),
    [
        (errors.AuthenticationError, False, True),
        # a 403 is one model's until seen on two; a quota comes back: neither is permanent
        (errors.PermissionDeniedError, False, False),
        (errors.QuotaExceededError, False, False),
        (errors.RateLimitError, True, False),
        (errors.InvalidRequestError, False, False),
        (errors.ContextLengthError, False, False),
        (errors.ContentFilterError, False, False),
        (errors.NotFoundError, False, False),
        (errors.ServerError, True, False),
        (errors.OverloadedError, True, False),
        (errors.TimeoutError, True, False),
        (errors.NetworkError, True, False),
        (errors.ProtocolError, True, False),
        (errors.AllKeysExhaustedError, True, False),
    ],
)
def test_it_marks_each_error_retryable_or_permanent(cls, retryable, permanent):
    assert (cls.retryable, cls.permanent) == (retryable, permanent)
    assert issubclass(cls, errors.ProviderError)


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, errors.InvalidRequestError),
        (401, errors.AuthenticationError),
        (402, errors.QuotaExceededError),
        (403, errors.PermissionDeniedError),
        (404, errors.NotFoundError),
        (408, errors.TimeoutError),
        (413, errors.InvalidRequestError),
        (429, errors.RateLimitError),
        (500, errors.ServerError),
        (503, errors.OverloadedError),
        (504, errors.TimeoutError),
        (529, errors.OverloadedError),
        (599, errors.ServerError),
        (418, errors.InvalidRequestError),
        (0, errors.ServerError),
    ],
)
def test_it_picks_a_class_from_the_status_when_the_body_says_nothing_more(status, cls):
    assert errors.class_for_status(status) is cls


def test_it_renders_the_api_error_shape():
    error = errors.RateLimitError(
        "slow down", provider="openai", status_code=429, code="rate_limit_exceeded", retry_after=2
    )
    assert error.to_dict() == {
        "type": "rate_limit_error",
        "code": "rate_limit_exceeded",
        "message": "slow down",
    }
    assert error.retry_after == 2
    assert "openai" in repr(error)
