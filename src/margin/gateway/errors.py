"""Errors the gateway returns to clients: each carries its HTTP status and error type, and renders as an
OpenAI-style body (``{"error": {...}}``) or, on ``/v1/messages``, an Anthropic-style body. Never a bare 500."""

from __future__ import annotations

from typing import Any

import orjson

from ..errors import MarginError

__all__ = ["GatewayError", "render_error"]


class GatewayError(MarginError):
    def __init__(
        self,
        message: str,
        *,
        status: int,
        error_type: str,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.http_status = status
        self.error_type = error_type
        self.code = code or error_type
        self.param = param
        self.headers = headers or {}


# Anthropic's error type vocabulary, for the same situations.
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "api_error",
}


def render_error(error: MarginError, *, wire: str) -> tuple[int, bytes, dict[str, str]]:
    """(status, body, headers) for an error, in the client's wire format."""
    status = getattr(error, "http_status", 500) or 500
    headers = dict(getattr(error, "headers", {}) or {})
    code = getattr(error, "code", None) or error.error_type
    body: dict[str, Any]
    if wire == "anthropic":
        body = {
            "type": "error",
            "error": {"type": _ANTHROPIC_TYPES.get(status, "api_error"), "message": error.message, "code": code},
        }
    else:
        body = {
            "error": {
                "message": error.message,
                "type": error.error_type,
                "param": getattr(error, "param", None),
                "code": code,
            }
        }
    return status, orjson.dumps(body), headers
