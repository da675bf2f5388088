"""The Anthropic dialect: `POST /v1/messages`, so the official SDK works unchanged.

Requests are translated to the canonical form and answered by the same gateway as the OpenAI
routes, whatever provider ends up serving them; answers and errors go back in Anthropic's
shapes. Any `anthropic-version` header is accepted.
"""

from __future__ import annotations

from typing import get_args

from aiohttp import web

from stellara import _json
from stellara.inbound.anthropic import (
    PARAM_NAMES,
    AnthropicStreamWriter,
    to_chat_request,
    to_message,
)
from stellara.server.intake import open_model_call, response_headers
from stellara.server.spec import Access, Call, Dialect, Reply, Route
from stellara.server.sse import AnthropicFrames, relay
from stellara.wire import anthropic as wire


async def messages(call: Call) -> web.StreamResponse:
    # The wire decoder requires max_tokens, as Anthropic's API does.
    ctx, wire_request = await open_model_call(call, wire.request_decoder)
    chat = to_chat_request(wire_request)
    ctx.param_names = PARAM_NAMES
    gateway = call.runtime.gateway
    if chat.is_streaming:
        stream = await gateway.open_stream(ctx, chat)
        writer = AnthropicStreamWriter(chat.model, provider=ctx.provider_id)
        return await relay(call, stream, AnthropicFrames(writer))
    completion = await gateway.complete(ctx, chat)
    message = to_message(completion, model=wire_request.model)
    return web.Response(body=_json.encode(message), headers=response_headers(call, is_json=True))


ROUTES = (
    Route(
        "POST",
        "/v1/messages",
        messages,
        Access.MODEL,
        "Anthropic Messages (`max_tokens` required; any `anthropic-version`)",
        Reply(
            "A message, or with `stream: true` an SSE stream of Anthropic events "
            "(`event: <type>` + `data: <json>`), ending with `message_stop` or `error`",
            wire.Message,
            stream=get_args(wire.StreamEvent),
        ),
        dialect=Dialect.ANTHROPIC,
        body=wire.MessagesRequest,
        example={
            "model": "my-model",
            "max_tokens": 256,
            "messages": [{"role": "user", "content": "Hello!"}],
        },
    ),
)
