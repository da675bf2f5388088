"""The exceptions Stellara raises, and how each maps to an HTTP error body.

```
StellaraError                     .status_code .error_type .code .param
├── ClientError                   the caller's fault (4xx)
│   ├── InvalidRequestError       400
│   ├── AuthenticationError       401
│   ├── PermissionDeniedError     403
│   ├── ModelNotFoundError        404
│   ├── RouteNotFoundError        404, an unknown path
│   ├── ResponseNotFoundError     404, no stored response of that id for this caller
│   ├── MethodNotAllowedError     405
│   ├── ConflictError             409, e.g. an experiment id already taken
│   ├── PayloadTooLargeError      413
│   │   └── StoredResponseTooLargeError  a response to store is larger than the whole store
│   └── RateLimitedError          429, .retry_after_s (a rate limit, a burst)
│       ├── QuotaExceededError    429, `insufficient_quota`: a daily, monthly or session quota
│       └── ConcurrencyLimitedError  429: as many calls in flight as the tier allows
├── UpstreamError                 a provider failed; .provider .upstream_status .is_retryable
│   ├── UpstreamTimeoutError      no answer in time (504 when it was the last target)
│   ├── UpstreamUnavailableError  5xx, connection refused or reset (502)
│   ├── UpstreamRateLimitedError  provider said 429; .retry_after_s
│   ├── UpstreamBadRequestError   provider refused the request (relayed as 400)
│   │   ├── ContextWindowExceededError  prompt too long for the model (try a larger one)
│   │   └── ContentFilterError    the provider's safety system blocked the prompt or the answer
│   ├── UpstreamAuthError         the provider rejected the gateway's credentials (502)
│   ├── UpstreamNotFoundError     the provider knows no such model or route: a config error (502)
│   └── UpstreamProtocolError     malformed body or broken stream (502)
├── InternalError                 500: a bug, logged with its traceback under the request id
├── NoHealthyProviderError        503: no target could be tried; .retry_after_s
├── ClientDisconnectedError       499: the client left before the answer was complete (records only)
├── StateBackendError             Redis unreachable or failing: `state.on_failure` decides (503)
├── StoreUnavailableError         the SQL store of keys and usage did not answer (503)
├── StartupError                  the gateway cannot start (a port in use): one line, exit 1
└── ConfigError                   start-up only: one line per problem, with its path in the file
```

Transport and status failures are kept apart (`UpstreamUnavailableError` vs the provider's
own status) so that retry policy can tell them apart. Messages never contain secrets.
"""

from __future__ import annotations

import math


class StellaraError(Exception):
    """Base of every error Stellara raises on purpose."""

    status_code: int = 500
    error_type: str = "api_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code


class ClientError(StellaraError):
    """The request itself is at fault; retrying it unchanged will not help."""

    status_code = 400
    error_type = "invalid_request_error"


class InvalidRequestError(ClientError):
    status_code = 400
    error_type = "invalid_request_error"


class AuthenticationError(ClientError):
    status_code = 401
    error_type = "authentication_error"
    code = "invalid_api_key"


class PermissionDeniedError(ClientError):
    status_code = 403
    error_type = "permission_error"
    code = "model_not_allowed"


class ModelNotFoundError(ClientError):
    status_code = 404
    error_type = "invalid_request_error"
    code = "model_not_found"


class RouteNotFoundError(ClientError):
    status_code = 404
    error_type = "invalid_request_error"
    code = "not_found"


class ResponseNotFoundError(ClientError):
    """No stored Responses API response of that id for this caller: never stored, expired,
    deleted, evicted, or another user's (which must not tell that it exists)."""

    status_code = 404
    error_type = "invalid_request_error"
    code = "not_found"


class MethodNotAllowedError(ClientError):
    """405; `allowed` are the methods the path takes (the `Allow` header)."""

    status_code = 405
    error_type = "invalid_request_error"
    code = "method_not_allowed"

    def __init__(self, message: str, *, allowed: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.allowed = allowed


class ConflictError(ClientError):
    """409: the request conflicts with what exists (an experiment of that id, another one
    running on the same model)."""

    status_code = 409
    error_type = "invalid_request_error"
    code = "conflict"


class PayloadTooLargeError(ClientError):
    status_code = 413
    error_type = "invalid_request_error"
    code = "payload_too_large"


class StoredResponseTooLargeError(PayloadTooLargeError):
    """A Responses API response to store (with its input and conversation) is larger on its
    own than `responses.max_stored_bytes`, so no eviction could make room for it. Raised
    before anything is stored or evicted; the client can send the request with
    `store: false` instead."""

    def __init__(self, size: int, max_stored_bytes: int) -> None:
        super().__init__(
            f"The response and its input come to {size} bytes, more than the "
            f"{max_stored_bytes} bytes this gateway stores in all; send it with store: false.",
            param="store",
        )
        self.size = size
        self.max_stored_bytes = max_stored_bytes


class RateLimitedError(ClientError):
    """The caller is over a rate limit or quota; `retry_after_s` says when to come back."""

    status_code = 429
    error_type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after_s: int, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after_s = max(1, retry_after_s)


class ConcurrencyLimitedError(RateLimitedError):
    """The caller has as many model calls in flight on this process as its tier (or key)
    allows (`limit`); one finishing makes room."""

    code = "concurrency_limit_exceeded"

    def __init__(self, message: str, *, limit: int) -> None:
        super().__init__(message, retry_after_s=1, code=self.code)
        self.limit = limit


class QuotaExceededError(RateLimitedError):
    """A quota is used up until its period ends (`retry_after_s`); OpenAI's own body for it."""

    error_type = "insufficient_quota"
    code = "insufficient_quota"


class UpstreamError(StellaraError):
    """A provider call failed. Raised by adapters; the attempt loop decides what follows."""

    status_code = 502
    error_type = "api_error"
    code = "upstream_error"
    is_retryable = True

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        upstream_status: int | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message, param=param)
        self.provider = provider
        self.upstream_status = upstream_status


class UpstreamTimeoutError(UpstreamError):
    status_code = 504
    error_type = "timeout_error"
    code = "upstream_timeout"


class UpstreamUnavailableError(UpstreamError):
    status_code = 502
    code = "upstream_unavailable"


class UpstreamRateLimitedError(UpstreamError):
    status_code = 429
    error_type = "rate_limit_error"
    code = "upstream_rate_limited"

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        upstream_status: int | None = 429,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message, provider=provider, upstream_status=upstream_status)
        self.retry_after_s = retry_after_s


class UpstreamBadRequestError(UpstreamError):
    """The provider refused the request as invalid: the client's fault, never retried."""

    status_code = 400
    error_type = "invalid_request_error"
    code = "upstream_bad_request"
    is_retryable = False


class ContextWindowExceededError(UpstreamBadRequestError):
    """Not retryable on the same model, but a model with a larger context may take it."""

    code = "context_length_exceeded"


class ContentFilterError(UpstreamBadRequestError):
    """The provider's safety system blocked the prompt or the answer."""

    code = "content_filter"


class UpstreamAuthError(UpstreamError):
    """The provider refused the gateway's credentials: an operator problem, not the client's."""

    status_code = 502
    code = "upstream_auth_failed"
    is_retryable = False


class UpstreamNotFoundError(UpstreamError):
    """The provider knows no such model or route: the gateway's config is wrong, not the client."""

    status_code = 502
    code = "upstream_not_found"
    is_retryable = False


class UpstreamProtocolError(UpstreamError):
    status_code = 502
    code = "upstream_protocol_error"


class NoHealthyProviderError(StellaraError):
    """No target could be tried: every circuit breaker refused. `retry_after_s` is how long
    until the first of them lets a call through again, in whole seconds (at least 1), or None
    when that is not known."""

    status_code = 503
    error_type = "api_error"
    code = "no_healthy_provider"

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = None if retry_after_s is None else max(1, math.ceil(retry_after_s))


class InternalError(StellaraError):
    """500: a bug met on the request path. The message names the request, whose log line
    holds the traceback; nothing of the bug itself reaches the client."""

    @classmethod
    def of_request(cls, request_id: str) -> InternalError:
        return cls(f"Internal error; the gateway log has the details of {request_id}.")


class ClientDisconnectedError(StellaraError):
    """The client went away mid-answer; only ever recorded, never sent."""

    status_code = 499
    error_type = "client_closed_request"
    code = "client_closed_request"


class StartupError(StellaraError):
    """The gateway cannot start here (its port is taken, its address unknown); start-up
    only, reported as one line."""


class StateBackendError(StellaraError):
    """The shared state backend did not answer in time or failed. The limits policy decides
    whether the request goes on without limits (`on_failure: open`) or is refused (`closed`)."""

    status_code = 503
    error_type = "api_error"
    code = "state_backend_unavailable"


class StoreUnavailableError(StellaraError):
    """The SQL store of virtual keys and usage records failed or did not answer in time.

    Model calls never fail for it, except a call with a virtual key this process has not
    looked up yet (it cannot tell a good key from a bad one)."""

    status_code = 503
    error_type = "api_error"
    code = "store_unavailable"


class ConfigError(StellaraError):
    """A configuration file is invalid. `problems` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems
