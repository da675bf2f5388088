"""The Anthropic Messages route, `POST /v1/messages`, so the official SDK works unchanged.

Requests are translated to the canonical form and answered by the same gateway as the OpenAI
route, whatever provider ends up serving them; answers and errors go back in Anthropic's shapes.
"""

from __future__ import annotations

import logging

from aiohttp import web

from stellara import _json
from stellara.errors import StellaraError, UpstreamError
from stellara.inbound.anthropic import AnthropicStreamWriter, to_chat_request, to_message
from stellara.pipeline.auth import Authenticator
from stellara.pipeline.context import RequestContext
from stellara.pipeline.gateway import ChunkStream, Gateway
from stellara.providers.anthropic import wire
from stellara.schema.chat import ChatRequest
from stellara.server.errors import (
    anthropic_error_body,
    anthropic_error_response,
)
from stellara.server.request import (
    ModelCallIntake,
    new_request_id,
    response_headers,
    unexpected_error,
)

logger = logging.getLogger(__name__)


class AnthropicRoutes:
    """Handlers of the Anthropic dialect, bound to one app's gateway."""

    def __init__(
        self,
        gateway: Gateway,
        auth: Authenticator,
        *,
        max_body_bytes: int,
        timeout_s: float,
    ) -> None:
        self._gateway = gateway
        self._intake = ModelCallIntake(auth, gateway.clock, max_body_bytes, timeout_s)

    def register(self, app: web.Application) -> None:
        app.router.add_post("/v1/messages", self.messages)

    async def messages(self, request: web.Request) -> web.StreamResponse:
        """Answer one Messages request; any `anthropic-version` header is accepted."""
        request_id = new_request_id()
        ctx: RequestContext | None = None
        try:
            # The wire decoder requires max_tokens, as Anthropic's API does.
            ctx, wire_request = await self._intake.begin(request, request_id, wire.request_decoder)
            chat = to_chat_request(wire_request)
            if chat.is_streaming:
                return await self._stream(request, ctx, chat)
            completion = await self._gateway.complete(ctx, chat)
        except StellaraError as exc:
            return anthropic_error_response(exc, response_headers(request_id, ctx))
        except Exception:  # noqa: BLE001 - the HTTP boundary: logged, answered 500, never a hang
            error = unexpected_error(self._gateway, request_id, ctx)
            return anthropic_error_response(error, response_headers(request_id, ctx))
        message = to_message(completion, model=wire_request.model)
        return web.Response(
            body=_json.encode(message), headers=response_headers(request_id, ctx, True)
        )

    async def _stream(
        self, request: web.Request, ctx: RequestContext, chat: ChatRequest
    ) -> web.StreamResponse:
        stream = await self._gateway.open_stream(ctx, chat)
        headers = response_headers(ctx.request_id, ctx)
        headers["Content-Type"] = "text/event-stream"
        headers["Cache-Control"] = "no-cache"
        response = web.StreamResponse(headers=headers)
        writer = AnthropicStreamWriter(chat.model, provider=ctx.provider_id)
        try:
            await response.prepare(request)
            await _relay(response, stream, writer)
        except (ConnectionError, OSError):
            pass  # the client went away; `finally` stops paying for tokens
        finally:
            # A no-op after a complete or upstream-failed stream; otherwise it ends the upstream
            # call (client gone, or the writer refused an out-of-order chunk).
            await stream.aclose()
        return response


async def _relay(
    response: web.StreamResponse, stream: ChunkStream, writer: AnthropicStreamWriter
) -> None:
    """Write each chunk's events as they come; a stream broken upstream ends with `error`."""
    try:
        async for chunk in stream:
            await _write(response, writer.feed(chunk))
    except UpstreamError as exc:
        await response.write(b"event: error\ndata: " + anthropic_error_body(exc) + b"\n\n")
        return
    await _write(response, writer.finish())


async def _write(response: web.StreamResponse, events: list[wire.StreamEvent]) -> None:
    if not events:
        return
    frames = [
        b"event: %s\ndata: %s\n\n"
        % (str(event.__struct_config__.tag).encode(), _json.encode(event))
        for event in events
    ]
    await response.write(b"".join(frames))  # one write per chunk, not per event
