"""One error hierarchy for the gateway; each error knows its HTTP status and OpenAI error fields.

    RailguardError                      500 server_error          (never raised for bad input)
    ├── InvalidRequestError             400 invalid_request_error
    │   ├── ContentFilterError          400 code=content_filter   (a policy that asks for Azure-style errors)
    │   └── UnsupportedParameterError   400 code=unsupported_parameter
    ├── AuthenticationError             401 code=invalid_api_key
    ├── NotFoundError                   404 (unknown route or model)
    ├── MethodNotAllowedError           405
    ├── RequestTimeoutError             408 code=request_timeout  (a body not sent in time)
    ├── PayloadTooLargeError            413
    ├── RateLimitError                  429 code=rate_limit_exceeded, type=requests
    │   └── TokenRateLimitError         429 type=tokens           (tokens per minute)
    ├── ClientClosedError               499 (the client left mid-request: nobody reads the answer)
    ├── ServiceUnavailableError         503 (model not loaded yet)
    │   └── ReviewUnavailableError      503 code=review_store_unavailable (the queue's Redis is down)
    ├── UpstreamRejectedError           4xx as the upstream answered (the request was invalid there)
    ├── UpstreamError                   502 (upstream down, broken, or answering 5xx)
    └── UpstreamTimeoutError            504 (upstream too slow)

`render(error)` gives the JSON body `{"error": {"message", "type", "param", "code"}}` that OpenAI's
clients parse; the app installs one handler that calls it, so no route builds error JSON itself.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "AuthenticationError",
    "ClientClosedError",
    "ContentFilterError",
    "InvalidRequestError",
    "MethodNotAllowedError",
    "NotFoundError",
    "PayloadTooLargeError",
    "RailguardError",
    "RateLimitError",
    "RequestTimeoutError",
    "ReviewUnavailableError",
    "ServiceUnavailableError",
    "TokenRateLimitError",
    "UnsupportedParameterError",
    "UpstreamError",
    "UpstreamRejectedError",
    "UpstreamTimeoutError",
    "render",
]


class RailguardError(Exception):
    status: ClassVar[int] = 500
    type: ClassVar[str] = "server_error"
    default_code: ClassVar[str | None] = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code
        self.extra = extra or {}
        self.headers = headers or {}


class InvalidRequestError(RailguardError):
    status = 400
    type = "invalid_request_error"


class ContentFilterError(InvalidRequestError):
    default_code = "content_filter"


class UnsupportedParameterError(InvalidRequestError):
    default_code = "unsupported_parameter"


class AuthenticationError(RailguardError):
    status = 401
    type = "invalid_request_error"
    default_code = "invalid_api_key"


class NotFoundError(RailguardError):
    status = 404
    type = "invalid_request_error"


class MethodNotAllowedError(RailguardError):
    status = 405
    type = "invalid_request_error"
    default_code = "method_not_allowed"


class RequestTimeoutError(RailguardError):
    status = 408
    type = "invalid_request_error"
    default_code = "request_timeout"


class PayloadTooLargeError(RailguardError):
    status = 413
    type = "invalid_request_error"
    default_code = "request_too_large"


class RateLimitError(RailguardError):
    status = 429
    type = "requests"
    default_code = "rate_limit_exceeded"


class TokenRateLimitError(RateLimitError):
    type = "tokens"


class ClientClosedError(RailguardError):
    """nginx's 499: counted and recorded like any failed request, but never logged as an error."""

    status = 499
    type = "invalid_request_error"
    default_code = "client_closed"


class ServiceUnavailableError(RailguardError):
    status = 503
    type = "server_error"
    default_code = "model_not_ready"


class ReviewUnavailableError(ServiceUnavailableError):
    """The review queue's store (Redis) does not answer: nothing was written, try again."""

    default_code = "review_store_unavailable"


class UpstreamError(RailguardError):
    status = 502
    type = "upstream_error"
    default_code = "upstream_unavailable"


class UpstreamRejectedError(RailguardError):
    """The upstream refused the request as invalid (4xx): the client's error, passed on as it was."""

    type = "invalid_request_error"

    def __init__(self, status: int, message: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.status = status  # type: ignore[misc]


class UpstreamTimeoutError(UpstreamError):
    status = 504
    default_code = "upstream_timeout"


def render(error: RailguardError) -> dict[str, Any]:
    body: dict[str, Any] = {
        "message": error.message,
        "type": error.type,
        "param": error.param,
        "code": error.code,
    }
    body.update(error.extra)
    return {"error": body}
