"""The provider interface: how the gateway talks to an upstream model API.

A provider speaks one or more *wires* (request/response formats): ``openai`` (chat completions,
embeddings) and ``anthropic`` (messages). The gateway hands it an :class:`UpstreamCall` already in the
provider's wire format, with the upstream model name and ``max_tokens`` set, and gets back either a whole
JSON response (:meth:`Provider.send`) or a stream of server-sent events (:meth:`Provider.stream`).
Providers never price, meter or enforce budgets: they move bytes and report failures as
:class:`UpstreamError`, whose ``retryable`` flag drives the gateway's retries and fallbacks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

__all__ = [
    "Endpoint",
    "Provider",
    "SSEEvent",
    "UpstreamCall",
    "UpstreamError",
    "UpstreamResponse",
    "Wire",
]

Wire = Literal["openai", "anthropic"]
# Which operation: OpenAI chat completions, OpenAI embeddings, Anthropic messages.
Endpoint = Literal["chat.completions", "embeddings", "messages"]


@dataclass(frozen=True, kw_only=True)
class UpstreamCall:
    wire: Wire
    endpoint: Endpoint
    # The request body in the wire's format; ``model`` is the upstream model name, ``max_tokens`` (or
    # ``max_completion_tokens``) is set by the gateway, and for OpenAI streams ``stream_options.include_usage``
    # is true.
    body: Mapping[str, Any]
    # Extra headers to pass through (e.g. ``anthropic-beta``); auth headers are the provider's business.
    headers: Mapping[str, str] = field(default_factory=dict)
    # Seconds for the whole call (non-streaming) or between two stream events (streaming).
    timeout: float = 60.0


@dataclass(frozen=True, kw_only=True)
class UpstreamResponse:
    status: int
    body: dict[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class SSEEvent:
    """One server-sent event. ``data`` is the raw data text (JSON, or ``[DONE]`` on OpenAI streams).
    ``more_ready`` says that the next event already arrived with this one (same upstream read), so a relay
    may hold this one back and write both to its client at once (one write instead of several)."""

    data: str
    event: str | None = None
    more_ready: bool = False


class UpstreamError(Exception):
    """The upstream failed. ``status`` is its HTTP status (0 for a connection failure, 504 for a timeout);
    ``error_type`` a short machine name (``rate_limited``, ``server_error``, ``timeout``,
    ``malformed_response``, ``stream_dropped``, ``bad_request``, ...); ``retryable`` says whether a retry or
    a fallback may succeed (429, 5xx, timeouts, connection errors, malformed bodies: yes; 4xx: no)."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        error_type: str,
        retryable: bool,
        body: Any = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.error_type = error_type
        self.retryable = retryable
        self.body = body
        self.retry_after = retry_after


@runtime_checkable
class Provider(Protocol):
    """An upstream. Implementations: ``mock`` (in-process fake), ``openai`` and ``openai_compatible``
    (any base URL speaking the OpenAI API), ``anthropic``."""

    name: str
    wires: frozenset[Wire]

    async def send(self, call: UpstreamCall) -> UpstreamResponse:
        """Make a non-streaming call. Raises UpstreamError on any failure (non-2xx, timeout, bad JSON)."""
        ...

    def stream(self, call: UpstreamCall) -> AsyncIterator[SSEEvent]:
        """Make a streaming call and yield its events. Raises UpstreamError before the first event when the
        call fails, and UpstreamError(error_type="stream_dropped") when the stream breaks midway."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...
