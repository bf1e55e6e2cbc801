"""A server-sent-events response written straight on ASGI.

Why not Starlette's StreamingResponse: it runs every stream in an anyio task group with a second task that
listens for the client's disconnect, which costs a visible share of the gateway's CPU per stream. Here one
callback on a pending ``receive()`` does that job: when the client disconnects, the response's own task is
cancelled at once (so the upstream stops being read and the relay's ``finally`` bills what was generated as
``client_abort``), and that cancellation is absorbed here because it is ours.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

__all__ = ["SSEResponse"]


class SSEResponse:
    """``text/event-stream`` of ``chunks`` with ``headers``; an ASGI app for one request."""

    def __init__(self, chunks: AsyncIterator[bytes], headers: Mapping[str, str]) -> None:
        self.chunks = chunks
        self.raw_headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"),
            *((name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()),
        ]

    async def __call__(self, scope: Mapping[str, Any], receive: Any, send: Any) -> None:
        task = asyncio.current_task()
        assert task is not None
        state = {"finished": False, "client_gone": False}

        def on_receive(future: asyncio.Future[Any]) -> None:
            if state["finished"] or future.cancelled():
                return
            error = future.exception()
            if error is not None or future.result().get("type") == "http.disconnect":
                state["client_gone"] = True
                task.cancel()

        # The request body was read before the response started, so the next message is the disconnect.
        watcher = asyncio.ensure_future(receive())
        watcher.add_done_callback(on_receive)
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            async for chunk in self.chunks:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not state["client_gone"]:
                raise
            task.uncancel()  # our own cancellation: the client left, the relay has settled the stream
        except OSError:
            pass  # the client's socket broke while writing: the relay's finally bills the stream
        finally:
            state["finished"] = True
            watcher.cancel()
            await self.chunks.aclose()  # runs the relay's finally if it has not ended yet
