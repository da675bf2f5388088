"""The OpenAI-compatible routes: `POST /v1/chat/completions`, `GET /v1/models`."""

from __future__ import annotations

import logging

from aiohttp import web

from stellara import _json
from stellara.errors import StellaraError, UpstreamError
from stellara.pipeline.auth import Authenticator
from stellara.pipeline.context import RequestContext
from stellara.pipeline.gateway import ChunkStream, Gateway
from stellara.schema.chat import ChatRequest, request_decoder
from stellara.schema.embeddings import embeddings_request_decoder
from stellara.server.errors import (
    error_response,
    openai_error_body,
)
from stellara.server.request import (
    ModelCallIntake,
    bearer_token,
    new_request_id,
    response_headers,
    unexpected_error,
)

logger = logging.getLogger(__name__)

_SSE_DONE = b"data: [DONE]\n\n"


class OpenAIRoutes:
    """Handlers of the OpenAI dialect, bound to one app's gateway."""

    def __init__(
        self,
        gateway: Gateway,
        auth: Authenticator,
        *,
        max_body_bytes: int,
        timeout_s: float,
    ) -> None:
        self._gateway = gateway
        self._auth = auth
        self._intake = ModelCallIntake(auth, gateway.clock, max_body_bytes, timeout_s)

    def register(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self.chat_completions)
        app.router.add_get("/v1/models", self.list_models)
        app.router.add_post("/v1/embeddings", self.embeddings)

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        request_id = new_request_id()
        ctx: RequestContext | None = None
        try:
            ctx, chat = await self._intake.begin(request, request_id, request_decoder)
            if chat.is_streaming:
                return await self._stream(request, ctx, chat)
            completion = await self._gateway.complete(ctx, chat)
        except StellaraError as exc:
            return error_response(exc, response_headers(request_id, ctx))
        except Exception:  # noqa: BLE001 - the HTTP boundary: logged, answered 500, never a hang
            error = unexpected_error(self._gateway, request_id, ctx)
            return error_response(error, response_headers(request_id, ctx))
        return web.Response(
            body=_json.encode(completion), headers=response_headers(request_id, ctx, True)
        )

    async def _stream(
        self, request: web.Request, ctx: RequestContext, chat: ChatRequest
    ) -> web.StreamResponse:
        stream = await self._gateway.open_stream(ctx, chat)
        headers = response_headers(ctx.request_id, ctx)
        headers["Content-Type"] = "text/event-stream"
        headers["Cache-Control"] = "no-cache"
        response = web.StreamResponse(headers=headers)
        try:
            await response.prepare(request)
            await _relay(response, stream)
        except (ConnectionError, OSError):
            await stream.aclose()  # the client went away: stop paying for tokens
        return response

    async def embeddings(self, request: web.Request) -> web.Response:
        request_id = new_request_id()
        ctx: RequestContext | None = None
        try:
            ctx, embeddings_request = await self._intake.begin(
                request, request_id, embeddings_request_decoder
            )
            response = await self._gateway.embed(ctx, embeddings_request)
        except StellaraError as exc:
            return error_response(exc, response_headers(request_id, ctx))
        except Exception:  # noqa: BLE001 - the HTTP boundary, as in chat_completions
            error = unexpected_error(self._gateway, request_id, ctx)
            return error_response(error, response_headers(request_id, ctx))
        return web.Response(
            body=_json.encode(response), headers=response_headers(request_id, ctx, True)
        )

    async def list_models(self, request: web.Request) -> web.Response:
        try:
            principal = await self._auth.authenticate(bearer_token(request))
        except StellaraError as exc:
            return error_response(exc)
        created = int(self._gateway.clock.time())
        data = [
            {"id": name, "object": "model", "created": created, "owned_by": "stellara"}
            for name in self._gateway.models.visible_to(principal)
        ]
        return web.json_response({"object": "list", "data": data}, dumps=_json_str)


async def _relay(response: web.StreamResponse, stream: ChunkStream) -> None:
    """Write each chunk as it arrives; a stream broken upstream ends with an error event."""
    try:
        async for chunk in stream:
            await response.write(b"data: " + _json.encode(chunk) + b"\n\n")
    except UpstreamError as exc:
        await response.write(b"data: " + openai_error_body(exc) + b"\n\n")
        return
    await response.write(_SSE_DONE)


def _json_str(value: object) -> str:
    return _json.dumps(value).decode()
