"""GatewayError and the OpenAI-style error body.

Every failure a client can see is a ``GatewayError`` with a stable ``code``; the
HTTP status and the OpenAI error ``type`` follow from the code, so a plugin only
names the code. The OpenAI SDKs map the status to their own exception classes
(401 → AuthenticationError, 404 → NotFoundError, 429 → RateLimitError, ...).
"""
from __future__ import annotations

from typing import Any, Mapping

__all__ = ["GatewayError", "ProviderError", "ERROR_CODES", "RETRYABLE_STATUSES", "error_body", "provider_error_from_status"]

# code -> (HTTP status, OpenAI error type)
ERROR_CODES: dict[str, tuple[int, str]] = {
    "invalid_request": (400, "invalid_request_error"),
    "dlp_violation": (400, "invalid_request_error"),
    "invalid_api_key": (401, "authentication_error"),
    "quota_exceeded": (402, "insufficient_quota"),
    "budget_exceeded": (402, "insufficient_quota"),
    "forbidden": (403, "permission_error"),
    "invalid_model": (404, "invalid_request_error"),
    "not_found": (404, "invalid_request_error"),
    "method_not_allowed": (405, "invalid_request_error"),
    "payload_too_large": (413, "invalid_request_error"),
    "unsupported_media_type": (415, "invalid_request_error"),
    "account_locked": (423, "permission_error"),
    "headers_too_large": (431, "invalid_request_error"),
    "rate_limit_exceeded": (429, "rate_limit_error"),
    "internal_error": (500, "server_error"),
    "provider_error": (502, "api_error"),
    "service_unavailable": (503, "server_error"),
    "provider_timeout": (504, "timeout_error"),
}


class GatewayError(Exception):
    """A failure with a stable ``code`` that becomes an OpenAI-style error reply.

    Raise it anywhere in the chain; the layer boundary in ``pipeline.build_chain``
    turns it into ``Reply.from_error`` so outer layers (metrics, usage) see it as a reply.
    ``details`` MUST never hold a secret or a user's value (DLP: names and counts only).
    """

    __slots__ = ("code", "message", "status", "type", "param", "details", "headers")

    def __init__(
        self,
        code: str,
        message: str,
        *,
        param: str | None = None,
        details: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        default_status, err_type = ERROR_CODES.get(code, (500, "server_error"))
        self.code = code
        self.message = message
        self.status = status or default_status
        self.type = err_type
        self.param = param
        self.details = dict(details) if details else None
        self.headers = dict(headers) if headers else {}

    def body(self) -> dict[str, Any]:
        return error_body(self.code, self.message, err_type=self.type, param=self.param, details=self.details)

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"GatewayError({self.code!r}, {self.message!r}, status={self.status})"


def error_body(
    code: str,
    message: str,
    *,
    err_type: str | None = None,
    param: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    if err_type is None:
        err_type = ERROR_CODES.get(code, (500, "server_error"))[1]
    return {"error": {"message": message, "type": err_type, "code": code, "param": param, "details": details}}


class ProviderError(GatewayError):
    """An upstream failure. ``retryable`` and ``retry_after`` guide the router.

    ``upstream_status`` is the provider's HTTP status (None for connect errors and timeouts).
    """

    __slots__ = ("upstream_status", "retryable", "retry_after", "context_window")

    def __init__(
        self,
        code: str,
        message: str,
        *,
        upstream_status: int | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
        context_window: bool = False,
        status: int | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(code, message, status=status, details=details)
        self.upstream_status = upstream_status
        self.retryable = retryable
        self.retry_after = retry_after
        self.context_window = context_window


RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504, 529})


def provider_error_from_status(status: int, message: str, *, retry_after: float | None = None) -> ProviderError:
    """Map an upstream HTTP status to our codes: 4xx client errors pass through as 400/404, the rest are 502."""
    lowered = message.lower()
    context = status == 400 and ("context length" in lowered or "context_length" in lowered or "too many tokens" in lowered)
    if status == 429:
        return ProviderError("rate_limit_exceeded", message, upstream_status=status, retryable=True, retry_after=retry_after)
    if status in RETRYABLE_STATUSES:
        return ProviderError("provider_error", message, upstream_status=status, retryable=True, retry_after=retry_after)
    if status == 404:
        return ProviderError("invalid_model", message, upstream_status=status)
    if status in (400, 413, 422):
        return ProviderError("invalid_request", message, upstream_status=status, context_window=context)
    if status in (401, 403):
        # The gateway's credentials for the provider are wrong: not the client's fault.
        return ProviderError("provider_error", f"provider rejected the gateway's credentials ({status})", upstream_status=status)
    return ProviderError("provider_error", message, upstream_status=status)
