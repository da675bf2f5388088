"""The one way a streamed answer goes out: canonical chunks in, a dialect's SSE frames out.

`relay` owns the upstream stream for the whole answer: however the answer ends (complete,
broken upstream, client gone, a bug), the stream is closed, so its request is recorded and
settled once and the provider stops generating tokens nobody reads. `send_answer` sends an
answer the gateway holds whole (a degraded one) through the same encoders.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Protocol

import msgspec
from aiohttp import web

from stellara import _json
from stellara._clock import Clock
from stellara.errors import InternalError, StellaraError, UpstreamError
from stellara.inbound.anthropic import AnthropicStreamWriter
from stellara.inbound.completions import TextCompletionStreamWriter
from stellara.inbound.functions import to_function_call_chunk
from stellara.inbound.gemini import GeminiStreamWriter
from stellara.inbound.responses import ResponsesStreamWriter
from stellara.pipeline.gateway import ChunkStream
from stellara.schema.chat import ChatCompletionChunk
from stellara.server.errors import error_event
from stellara.server.intake import response_headers
from stellara.server.spec import Call, Dialect
from stellara.wire import responses

logger = logging.getLogger(__name__)


class FrameEncoder(Protocol):
    """Turns canonical chunks into one dialect's SSE frames; a fresh one per answer."""

    def start(self) -> bytes:
        """The frames sent before the first chunk (empty when the dialect has none)."""
        ...

    def feed(self, chunk: ChatCompletionChunk) -> bytes:
        """The frames for `chunk` (empty when it adds nothing to send yet)."""
        ...

    async def finish(self) -> bytes:
        """The frames that end a complete answer (async: a dialect may keep the answer before
        telling the client it is complete)."""
        ...

    def fail(self, error: StellaraError) -> bytes:
        """The frames that end an answer broken after it started."""
        ...


class _ErrorEventEnd:
    """No opening frames; a broken answer ends with the dialect's error event."""

    dialect: Dialect

    def start(self) -> bytes:
        return b""

    def fail(self, error: StellaraError) -> bytes:
        return error_event(self.dialect, error)


class OpenAIFrames(_ErrorEventEnd):
    """`data: <chunk>` per chunk, `data: [DONE]` at the end.

    With `include_usage` (the request's `stream_options.include_usage`) every chunk carries
    `usage`, null on all but the last, as OpenAI's API sends them. With `legacy_functions` (a
    request in the deprecated `functions` form) tool calls go out as `function_call`.
    """

    dialect = Dialect.OPENAI

    def __init__(self, *, include_usage: bool = False, legacy_functions: bool = False) -> None:
        self._include_usage = include_usage
        self._legacy_functions = legacy_functions

    def feed(self, chunk: ChatCompletionChunk) -> bytes:
        if self._legacy_functions:
            chunk = to_function_call_chunk(chunk)
        body = _json.encode(chunk)
        if self._include_usage and chunk.usage is None:
            # The chunk is a JSON object: `usage` goes in before its closing brace, cheaper
            # than a second chunk type for the one field `omit_defaults` leaves out.
            body = body[:-1] + b',"usage":null}'
        return b"data: " + body + b"\n\n"

    async def finish(self) -> bytes:
        return b"data: [DONE]\n\n"


class TextCompletionFrames(_ErrorEventEnd):
    """Legacy completions: `data: <text_completion>` per event the writer makes of a chunk,
    `data: [DONE]` at the end."""

    dialect = Dialect.OPENAI

    def __init__(self, writer: TextCompletionStreamWriter) -> None:
        self._writer = writer

    def feed(self, chunk: ChatCompletionChunk) -> bytes:
        event = self._writer.feed(chunk)
        return b"" if event is None else b"data: " + _json.encode(event) + b"\n\n"

    async def finish(self) -> bytes:
        return b"data: [DONE]\n\n"


class AnthropicFrames(_ErrorEventEnd):
    """`event: <type>` + `data: <event>` for each Messages event the writer makes of a chunk."""

    dialect = Dialect.ANTHROPIC

    def __init__(self, writer: AnthropicStreamWriter) -> None:
        self._writer = writer

    def feed(self, chunk: ChatCompletionChunk) -> bytes:
        return _frames(self._writer.feed(chunk))

    async def finish(self) -> bytes:
        return _frames(self._writer.finish())


class GeminiFrames(_ErrorEventEnd):
    """`data: <GenerateContentResponse>` per piece the writer makes, CRLF-ended as Google's;
    no end marker (the last piece carries the finish reasons)."""

    dialect = Dialect.GEMINI

    def __init__(self, writer: GeminiStreamWriter) -> None:
        self._writer = writer

    def feed(self, chunk: ChatCompletionChunk) -> bytes:
        return _data_frames(self._writer.feed(chunk))

    async def finish(self) -> bytes:
        return _data_frames(self._writer.finish())


def _data_frames(pieces: Sequence[msgspec.Struct]) -> bytes:
    return b"".join(b"data: " + _json.encode(piece) + b"\r\n\r\n" for piece in pieces)


class ResponsesFrames:
    """`event: <type>` + `data: <event>` for each Responses event the writer makes; a complete
    answer is kept (`keep`, for `store: true`) before its last event goes out, so a client
    continuing it at once finds it."""

    def __init__(
        self,
        writer: ResponsesStreamWriter,
        clock: Clock,
        keep: Callable[[responses.Response], Awaitable[None]] | None,
    ) -> None:
        self._writer = writer
        self._clock = clock
        self._keep = keep

    def start(self) -> bytes:
        return _frames(self._writer.start())

    def feed(self, chunk: ChatCompletionChunk) -> bytes:
        return _frames(self._writer.feed(chunk))

    async def finish(self) -> bytes:
        events = self._writer.finish(completed_at=int(self._clock.time()))
        if self._keep is not None:
            await self._keep(self._writer.response)
        return _frames(events)

    def fail(self, error: StellaraError) -> bytes:
        return _frames(self._writer.fail(error))


def _frames(events: Sequence[msgspec.Struct]) -> bytes:
    return b"".join(
        b"event: %s\ndata: %s\n\n"
        % (str(event.__struct_config__.tag).encode(), _json.encode(event))
        for event in events
    )


def _event_stream(call: Call) -> web.StreamResponse:
    headers = response_headers(call)
    headers["Content-Type"] = "text/event-stream"
    headers["Cache-Control"] = "no-cache"
    return web.StreamResponse(headers=headers)


async def relay(call: Call, stream: ChunkStream, encoder: FrameEncoder) -> web.StreamResponse:
    """Send `stream` as SSE: one write per chunk; a stream broken upstream ends with the
    dialect's error event, never with a normal end."""
    response = _event_stream(call)
    try:
        await response.prepare(call.request)
        opening = encoder.start()
        if opening:
            await response.write(opening)
        await _send(call, response, stream, encoder)
    except (ConnectionError, OSError):
        pass  # the client went away; closing the stream below stops paying for tokens
    finally:
        await stream.aclose()
    return response


async def _send(
    call: Call, response: web.StreamResponse, stream: ChunkStream, encoder: FrameEncoder
) -> None:
    try:
        async for chunk in stream:
            frames = encoder.feed(chunk)
            if frames:
                await response.write(frames)
    except UpstreamError as exc:
        await response.write(encoder.fail(exc))
        return
    except StellaraError as exc:  # the encoder refused what the provider sent
        stream.fail(exc)
        await response.write(encoder.fail(exc))
        return
    except (ConnectionError, OSError):
        raise  # the client left, not a bug: `relay` ends the stream as that
    except Exception:  # headers are out: the error can only be an event now
        logger.exception("unexpected error in the stream of request %s", call.request_id)
        error = InternalError.of_request(call.request_id)
        stream.fail(error)
        await response.write(encoder.fail(error))
        return
    await response.write(await encoder.finish())


async def send_answer(
    call: Call, chunks: Iterable[ChatCompletionChunk], encoder: FrameEncoder
) -> web.StreamResponse:
    """Send an answer the gateway already holds whole (not a provider's stream: a degraded
    answer made after every route failed) as SSE, in one write."""
    response = _event_stream(call)
    try:
        await response.prepare(call.request)
        frames = [encoder.start(), *(encoder.feed(chunk) for chunk in chunks)]
        await response.write(b"".join(frames) + await encoder.finish())
    except (ConnectionError, OSError):
        pass  # the client went away: nothing upstream to stop
    return response
