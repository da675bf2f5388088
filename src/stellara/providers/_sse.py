"""Server-sent events read from an upstream response, one event at a time."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp


class SSEEvent:
    """One event: its `event` name (empty when the stream names none) and its `data` bytes."""

    __slots__ = ("data", "event")

    def __init__(self, event: str, data: bytes) -> None:
        self.event = event
        self.data = data


async def iter_sse(content: aiohttp.StreamReader) -> AsyncIterator[SSEEvent]:
    """Yield events as their blank-line terminator arrives; comments and ids are skipped."""
    event = ""
    data: list[bytes] = []
    async for raw_line in content:
        line = raw_line.rstrip(b"\r\n")
        if not line:
            if data:
                yield SSEEvent(event, b"\n".join(data))
            event, data = "", []
        elif line.startswith(b"data:"):
            value = line[5:]
            data.append(value[1:] if value.startswith(b" ") else value)
        elif line.startswith(b"event:"):
            event = line[6:].strip().decode("utf-8", "replace")
    if data:  # a final event without its blank line still counts
        yield SSEEvent(event, b"\n".join(data))
