import pytest

from stellara import errors
from stellara.errors import (
    AuthenticationError,
    ClientError,
    ConfigError,
    InvalidRequestError,
    MethodNotAllowedError,
    ModelNotFoundError,
    NoHealthyProviderError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitedError,
    RouteNotFoundError,
    StellaraError,
    UpstreamAuthError,
    UpstreamBadRequestError,
    UpstreamError,
    UpstreamNotFoundError,
    UpstreamProtocolError,
    UpstreamRateLimitedError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)


@pytest.mark.parametrize(
    ("cls", "status"),
    [
        (InvalidRequestError, 400),
        (AuthenticationError, 401),
        (PermissionDeniedError, 403),
        (ModelNotFoundError, 404),
        (RouteNotFoundError, 404),
        (MethodNotAllowedError, 405),
        (PayloadTooLargeError, 413),
    ],
)
def test_client_errors_status_codes(cls, status):
    error = cls("nope")
    assert isinstance(error, ClientError)
    assert isinstance(error, StellaraError)
    assert error.status_code == status
    assert error.message == "nope"
    assert str(error) == "nope"


def test_rate_limited_error_is_client_error_429():
    error = RateLimitedError("slow down", retry_after_s=7)
    assert isinstance(error, ClientError)
    assert error.status_code == 429
    assert error.error_type == "rate_limit_error"
    assert error.retry_after_s == 7


@pytest.mark.parametrize("given", [0, -5])
def test_rate_limited_error_retry_after_is_at_least_one(given):
    assert RateLimitedError("slow down", retry_after_s=given).retry_after_s == 1


@pytest.mark.parametrize(
    ("cls", "status", "retryable"),
    [
        (UpstreamTimeoutError, 504, True),
        (UpstreamUnavailableError, 502, True),
        (UpstreamRateLimitedError, 429, True),
        (UpstreamBadRequestError, 400, False),
        (UpstreamAuthError, 502, False),
        (UpstreamNotFoundError, 502, False),
        (UpstreamProtocolError, 502, True),
    ],
)
def test_upstream_errors_status_and_retryability(cls, status, retryable):
    error = cls("failed", provider="p1")
    assert isinstance(error, UpstreamError)
    assert not isinstance(error, ClientError)
    assert error.status_code == status
    assert error.is_retryable is retryable
    assert error.provider == "p1"


def test_upstream_error_carries_status_and_param():
    error = UpstreamBadRequestError("bad", provider="p", upstream_status=422, param="messages")
    assert error.upstream_status == 422
    assert error.param == "messages"


def test_upstream_rate_limited_error_defaults_upstream_status_429():
    error = UpstreamRateLimitedError("busy", provider="p", retry_after_s=2.5)
    assert error.upstream_status == 429
    assert error.retry_after_s == 2.5


def test_no_healthy_provider_error_is_503_and_not_upstream():
    error = NoHealthyProviderError("none")
    assert error.status_code == 503
    assert not isinstance(error, (ClientError, UpstreamError))
    assert error.retry_after_s is None


@pytest.mark.parametrize(("wait_s", "retry_after_s"), [(0.0, 1), (0.2, 1), (29.01, 30)])
def test_no_healthy_provider_error_retry_after_is_whole_seconds(wait_s, retry_after_s):
    assert NoHealthyProviderError("none", retry_after_s=wait_s).retry_after_s == retry_after_s


def test_config_error_joins_problems_one_per_line():
    error = ConfigError(["a: bad", "b: worse"])
    assert error.problems == ["a: bad", "b: worse"]
    assert str(error) == "a: bad\nb: worse"


def test_stellara_error_code_override_keeps_class_default_elsewhere():
    overridden = AuthenticationError("x", code="expired_key")
    assert overridden.code == "expired_key"
    assert AuthenticationError("y").code == "invalid_api_key"


def test_errors_docstring_draws_every_exception():
    doc = errors.__doc__ or ""
    names = [
        name
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, StellaraError)
    ]
    assert names
    missing = [name for name in names if name not in doc]
    assert missing == []
