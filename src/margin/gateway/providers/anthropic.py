"""Anthropic's Messages API: ``messages`` is sent to ``POST {base_url}/v1/messages`` with ``x-api-key`` (when an
API key is set) and ``anthropic-version``; an ``anthropic-beta`` header on the call is passed through."""

from __future__ import annotations

from typing import Any

import httpx2
import orjson

from .base import SSEEvent, UpstreamCall, UpstreamError, Wire
from .http import HTTPProvider

__all__ = ["AnthropicProvider"]


class AnthropicProvider(HTTPProvider):
    """Speaks the ``anthropic`` wire over HTTP. See :class:`~margin.gateway.providers.http.HTTPProvider` for the
    timeout and pooling options."""

    wires: frozenset[Wire] = frozenset({"anthropic"})

    def __init__(
        self,
        name: str,
        *,
        base_url: str = "https://api.anthropic.com",
        api_key: str | None = None,
        anthropic_version: str = "2023-06-01",
        timeout: float = 60.0,
        connect_timeout: float = 5.0,
        transport: httpx2.AsyncBaseTransport | None = None,
        max_connections: int = 100,
        **options: Any,
    ) -> None:
        super().__init__(
            name,
            base_url=base_url,
            timeout=timeout,
            connect_timeout=connect_timeout,
            transport=transport,
            max_connections=max_connections,
            **options,
        )
        self._api_key = api_key
        self.anthropic_version = anthropic_version

    def _url(self, call: UpstreamCall) -> str:
        if call.wire != "anthropic" or call.endpoint != "messages":
            raise UpstreamError(
                f"{self.name}: an Anthropic upstream cannot serve {call.wire}/{call.endpoint}",
                status=400,
                error_type="bad_request",
                retryable=False,
            )
        return self.base_url + "/v1/messages"

    def _auth_headers(self) -> dict[str, str]:
        headers = {"anthropic-version": self.anthropic_version}
        if self._api_key:
            headers["x-api-key"] = self._api_key
        return headers

    def _stream_error(self, event: SSEEvent) -> Any:
        # `event: error` with {"type": "error", "error": {"type": "overloaded_error", "message": ...}}.
        if event.event != "error" and '"type":"error"' not in event.data[:40].replace(" ", ""):
            return None
        try:
            body = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            return {"type": "error", "error": {"type": "api_error", "message": event.data}}
        if isinstance(body, dict) and (event.event == "error" or body.get("type") == "error"):
            return body
        return None
