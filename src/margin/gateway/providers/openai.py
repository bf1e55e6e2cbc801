"""OpenAI and OpenAI-compatible upstreams (vLLM, llama.cpp server, Ollama's ``/v1``, LiteLLM, ...).

``chat.completions`` is sent to ``POST {base_url}/chat/completions`` and ``embeddings`` to
``POST {base_url}/embeddings``; ``base_url`` includes the version prefix (``https://api.openai.com/v1``,
``http://localhost:11434/v1``). With an ``api_key`` the request carries ``Authorization: Bearer KEY``; local
servers usually need none.
"""

from __future__ import annotations

from typing import Any

import httpx2
import orjson

from .base import SSEEvent, UpstreamCall, UpstreamError, Wire
from .http import HTTPProvider

__all__ = ["OpenAIProvider"]

_PATHS = {"chat.completions": "/chat/completions", "embeddings": "/embeddings"}


class OpenAIProvider(HTTPProvider):
    """Speaks the ``openai`` wire over HTTP. See :class:`~margin.gateway.providers.http.HTTPProvider` for the
    timeout and pooling options."""

    wires: frozenset[Wire] = frozenset({"openai"})

    def __init__(
        self,
        name: str,
        *,
        base_url: str = "https://api.openai.com/v1",
        api_key: str | None = None,
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

    def _url(self, call: UpstreamCall) -> str:
        path = _PATHS.get(call.endpoint)
        if call.wire != "openai" or path is None:
            raise UpstreamError(
                f"{self.name}: an OpenAI upstream cannot serve {call.wire}/{call.endpoint}",
                status=400,
                error_type="bad_request",
                retryable=False,
            )
        return self.base_url + path

    def _auth_headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self._api_key}"} if self._api_key else {}

    def _stream_error(self, event: SSEEvent) -> Any:
        # OpenAI(-compatible) servers report a failure inside a stream as `data: {"error": {...}}`.
        if event.event == "error" or event.data.lstrip().startswith('{"error"'):
            try:
                body = orjson.loads(event.data)
            except orjson.JSONDecodeError:
                return {"error": {"message": event.data}}
            if isinstance(body, dict) and "error" in body:
                return body
            if event.event == "error":
                return {"error": {"message": event.data}}
        return None
