"""OpenAI stream events → canonical chunks: a fresh parser per request (pure, no I/O)."""

from __future__ import annotations

import msgspec

from stellara.errors import UpstreamError, UpstreamProtocolError, UpstreamUnavailableError
from stellara.schema.chat import ChatCompletionChunk, chunk_decoder
from stellara.wire.openai import error_body_decoder

_DONE = b"[DONE]"


class OpenAIStreamParser:
    """Turns the `data:` payloads of one OpenAI SSE stream into `ChatCompletionChunk`s.

    A stream is complete only after `[DONE]`; `finish` raises if the upstream stopped before,
    so a cut stream is never mistaken for a finished answer.
    """

    __slots__ = ("_provider", "is_done")

    def __init__(self, provider: str) -> None:
        self._provider = provider
        self.is_done = False

    def feed(self, data: bytes) -> ChatCompletionChunk | None:
        """The chunk in one event's data, or None for the `[DONE]` sentinel."""
        if data == _DONE:
            self.is_done = True
            return None
        try:
            return chunk_decoder.decode(data)
        except msgspec.DecodeError as exc:
            raise self._error_event(data) or UpstreamProtocolError(
                f"provider {self._provider!r} sent an invalid stream chunk: {exc}",
                provider=self._provider,
            ) from exc

    def finish(self) -> None:
        """Call when the upstream closed the stream."""
        if not self.is_done:
            raise UpstreamProtocolError(
                f"provider {self._provider!r} ended the stream before it was complete",
                provider=self._provider,
            )

    def _error_event(self, data: bytes) -> UpstreamError | None:
        """OpenAI reports failures mid-stream as a `{"error": {...}}` event."""
        try:
            detail = error_body_decoder.decode(data).error
        except msgspec.DecodeError:
            return None
        return UpstreamUnavailableError(
            f"provider {self._provider!r} failed mid-stream: {detail.type or 'error'}",
            provider=self._provider,
        )
