"""Server-sent events: an incremental parser and an encoder.

The parser follows the WHATWG "event stream interpretation" rules: lines end in ``\\r\\n``, ``\\n`` or a lone
``\\r``; a blank line dispatches the pending event; lines starting with ``:`` are comments; ``field: value``
loses one leading space from the value; several ``data`` lines are joined with ``\\n``; an event without any
``data`` line is not dispatched; ``id`` and ``retry`` are ignored (LLM APIs do not use them). Bytes may arrive
split anywhere, even inside a UTF-8 character or between ``\\r`` and ``\\n``.
"""

from __future__ import annotations

import re

from .base import SSEEvent

__all__ = ["SSEParser", "encode_sse"]

_BOM = b"\xef\xbb\xbf"
_NEWLINE = re.compile(r"\r\n|\r|\n")


class SSEParser:
    """Feed raw bytes as they arrive; get back the events completed so far.

    >>> p = SSEParser()
    >>> p.feed(b"event: ping\\ndata: {}\\n") + p.feed(b"\\n")
    [SSEEvent(data='{}', event='ping')]
    """

    def __init__(self) -> None:
        self._buffer = b""
        self._started = False  # the optional byte-order mark is only stripped at the very start
        self._data: list[str] = []
        self._event: str | None = None

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Consume ``chunk`` and return the events it completed (possibly none)."""
        if not chunk:
            return []
        self._buffer += chunk
        if not self._started:
            if len(self._buffer) < len(_BOM) and _BOM.startswith(self._buffer):
                return []  # could still be the start of a byte-order mark
            self._started = True
            self._buffer = self._buffer.removeprefix(_BOM)
        events: list[SSEEvent] = []
        buffer = self._buffer
        start = 0
        end = len(buffer)
        while start < end:
            lf = buffer.find(b"\n", start)
            cr = buffer.find(b"\r", start, lf if lf >= 0 else end)
            if cr >= 0:
                if cr + 1 == end:
                    break  # a trailing \r may be the first half of \r\n: wait for the next byte
                line_end, next_start = cr, cr + (2 if buffer[cr + 1 : cr + 2] == b"\n" else 1)
            elif lf >= 0:
                line_end, next_start = lf, lf + 1
            else:
                break
            self._line(buffer[start:line_end].decode("utf-8", errors="replace"), events)
            start = next_start
        self._buffer = buffer[start:]
        return events

    def flush(self) -> list[SSEEvent]:
        """End of stream: process an unterminated last line and dispatch a pending event, leniently (the spec
        discards an event not followed by a blank line; servers that omit the final blank line exist)."""
        events: list[SSEEvent] = []
        if self._buffer:
            rest = self._buffer.removeprefix(_BOM) if not self._started else self._buffer
            self._buffer = b""
            for line in _NEWLINE.split(rest.decode("utf-8", errors="replace")):
                if line:
                    self._line(line, events)
        self._line("", events)
        return events

    def _line(self, line: str, events: list[SSEEvent]) -> None:
        if not line:
            if self._data:
                events.append(SSEEvent(data="\n".join(self._data), event=self._event))
            self._data = []
            self._event = None
            return
        if line.startswith(":"):
            return  # comment (keep-alive)
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value or None
        # "id", "retry" and unknown fields are ignored


def encode_sse(event: SSEEvent) -> bytes:
    """The wire form of ``event``: ``event: NAME`` (when set), one ``data:`` line per line of data, a blank line.

    Line breaks inside ``data`` (``\\n``, ``\\r\\n`` or ``\\r``) become separate ``data:`` lines, so the parser
    returns the data with ``\\n`` line breaks.
    """
    parts: list[str] = []
    if event.event:
        if "\n" in event.event or "\r" in event.event:
            raise ValueError(f"an SSE event name cannot contain a line break: {event.event!r}")
        parts.append(f"event: {event.event}\n")
    parts.extend(f"data: {line}\n" for line in _NEWLINE.split(event.data))
    parts.append("\n")
    return "".join(parts).encode("utf-8")
