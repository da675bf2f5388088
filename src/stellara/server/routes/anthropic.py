"""The Anthropic dialect: `POST /v1/messages` and `POST /v1/messages/count_tokens`, so the
official SDK (and Claude Code) works unchanged.

Requests are translated to the canonical form and answered by the same gateway as the OpenAI
routes, whatever provider ends up serving them; answers and errors go back in Anthropic's
shapes. Any `anthropic-version` header is accepted.
"""

from __future__ import annotations

import re
from typing import Generic, TypeVar, get_args

import msgspec
from aiohttp import web

from stellara import _json
from stellara.errors import InvalidRequestError
from stellara.inbound.anthropic import (
    PARAM_NAMES,
    AnthropicStreamWriter,
    to_chat_request,
    to_message,
)
from stellara.inbound.anthropic_count import to_count_request
from stellara.inbound.bounds import check_bounds
from stellara.pipeline.counting import PromptCounter
from stellara.server.intake import decode_body, open_model_call, read_body, response_headers
from stellara.server.spec import Access, Call, Dialect, Reply, Route
from stellara.server.sse import AnthropicFrames, relay
from stellara.wire import anthropic as wire
from stellara.wire import anthropic_count

TOKEN_COUNT = "x-stellara-token-count"
"""How a count was made: `provider` (the model's provider counted) or `estimate` (the
gateway's tokenizer did)."""

_UNKNOWN_FIELD = re.compile(r"unknown field `(?P<field>[^`]+)`(?: - at `\$\.?(?P<at>[^`]*)`)?")
_INDEX = re.compile(r"\[(\d+)\]")
T = TypeVar("T")


class _StrictDecoder(Generic[T]):
    """A request decoder whose refusal of an undeclared field reads as Anthropic's API's
    (`tools.0.defer_loading: Extra inputs are not permitted`): what the gateway cannot carry
    to the model is refused by name, never dropped."""

    def __init__(self, decoder: msgspec.json.Decoder[T]) -> None:
        self._decoder = decoder

    def decode(self, body: bytes, /) -> T:
        try:
            return self._decoder.decode(body)
        except msgspec.ValidationError as exc:
            found = _UNKNOWN_FIELD.search(str(exc))
            if found is None:
                raise
            at = _INDEX.sub(r".\1", found.group("at") or "")
            path = ".".join(part for part in (at, found.group("field")) if part)
            raise InvalidRequestError(
                f"{path}: Extra inputs are not permitted", param=path
            ) from exc


_messages_decoder = _StrictDecoder(wire.request_decoder)
_count_decoder = _StrictDecoder(anthropic_count.count_request_decoder)


async def messages(call: Call) -> web.StreamResponse:
    # The wire decoder requires max_tokens, as Anthropic's API does.
    ctx, wire_request = await open_model_call(call, _messages_decoder)
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


async def count_tokens(call: Call) -> web.StreamResponse:
    # Not a model call (see `pipeline.counting`): no pipeline context, no limits, no record.
    request = decode_body(_count_decoder, await read_body(call))
    check_bounds(request)
    runtime = call.runtime
    counter = PromptCounter(runtime.models, runtime.tokens, runtime.attempts)
    counted = await counter.count(
        call.caller, to_count_request(request), timeout_s=runtime.config.resilience.timeout_s
    )
    headers = response_headers(call, is_json=True)
    headers[TOKEN_COUNT] = "estimate" if counted.is_estimate else "provider"
    body = _json.encode(anthropic_count.MessageTokensCount(counted.input_tokens))
    return web.Response(body=body, headers=headers)


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
    Route(
        "POST",
        "/v1/messages/count_tokens",
        count_tokens,
        Access.MODEL,
        "Anthropic token counting: the model's provider counts when it can (Anthropic), else "
        "the gateway's tokenizer estimates; `x-stellara-token-count` says which. Not a model "
        "call: no limits, usage record or cost",
        Reply("The prompt's input tokens", anthropic_count.MessageTokensCount),
        dialect=Dialect.ANTHROPIC,
        body=anthropic_count.CountTokensRequest,
        example={"model": "my-model", "messages": [{"role": "user", "content": "Hello!"}]},
        # Not a model call: no limits, and an upstream that cannot count yields an estimate.
        errors={429: None, 502: None, 503: None, 504: None},
    ),
)
