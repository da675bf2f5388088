"""The Gemini API dialect: `/v1beta/models/…`, so `google-genai` works unchanged.

Requests are translated to the canonical form (`inbound.gemini`) and answered by the same
gateway as the OpenAI routes (limits, cache, routing, fallbacks, usage records), whatever
provider serves them; answers and errors go back in Gemini's shapes. The key comes as
`x-goog-api-key` or `?key=` (as Google's SDKs send it), or as on every other route.

`:countTokens` is answered by the gateway's own tokenizer (`stellara.tokens`, the estimate the
limits use), for every provider alike: no upstream call, no usage record. A public model whose
name holds a `/` cannot be named in these paths.
"""

from __future__ import annotations

import re
from dataclasses import replace

from aiohttp import web

from stellara import _json
from stellara.errors import InvalidRequestError
from stellara.inbound.bounds import check_bounds
from stellara.inbound.gemini import (
    PARAM_NAMES,
    GeminiStreamWriter,
    to_batch_embed_response,
    to_chat_request,
    to_embed_response,
    to_embeddings_request,
    to_generate_response,
)
from stellara.pipeline.context import RequestContext
from stellara.server.intake import (
    BodyDecoder,
    ModelRequest,
    decode_body,
    open_model_call,
    read_body,
    response_headers,
)
from stellara.server.spec import Access, Call, Dialect, Reply, Route
from stellara.server.sse import GeminiFrames, relay
from stellara.wire import google
from stellara.wire import google_inbound as wire

_UNKNOWN_FIELD = re.compile(r"Object contains unknown field `(?P<field>[^`]+)`")
_MODELS = "/v1beta/models"
_V1_MODELS = "/v1/models"


async def generate_content(call: Call) -> web.StreamResponse:
    model = _model(call)
    ctx, params = await _open(call, wire.generate_decoder)
    completion = await call.runtime.gateway.complete(ctx, to_chat_request(params, model))
    return _answer(call, _json.encode(to_generate_response(completion, model=model)))


async def stream_generate_content(call: Call) -> web.StreamResponse:
    model = _model(call)
    if call.request.query.get("alt") != "sse":
        raise InvalidRequestError(
            "streamGenerateContent is served as server-sent events only: add alt=sse.",
            param="alt",
        )
    ctx, params = await _open(call, wire.generate_decoder)
    chat = to_chat_request(params, model, is_streaming=True)
    stream = await call.runtime.gateway.open_stream(ctx, chat)
    return await relay(call, stream, GeminiFrames(GeminiStreamWriter(model)))


async def count_tokens(call: Call) -> web.StreamResponse:
    """The prompt's tokens by the gateway's tokenizer, for the model's first target."""
    model = _model(call)
    public = call.runtime.models.resolve(call.caller, model)
    params = _decode(wire.count_tokens_decoder, await read_body(call))
    check_bounds(params)
    request = params.generate_content_request
    if (request is None) == (params.contents is None):
        raise InvalidRequestError(
            "Send contents or generateContentRequest, one of the two.", param="contents"
        )
    if request is None:
        request = wire.GenerateContentParams(contents=params.contents or [])
    named = (request.model or "").removeprefix("models/")
    if named and named != model:
        raise InvalidRequestError(
            f"generateContentRequest.model {request.model!r} differs from the URL's model.",
            param="generateContentRequest.model",
        )
    chat = to_chat_request(request, model)
    total = call.runtime.tokens.count_prompt(chat, public.targets[0].model)
    return _answer(call, _json.encode(wire.CountTokensResponse(total_tokens=total)))


async def embed_content(call: Call) -> web.StreamResponse:
    model = _model(call)
    ctx, params = await _open(call, wire.embed_decoder)
    response = await call.runtime.gateway.embed(ctx, to_embeddings_request(params, model))
    return _answer(call, _json.encode(to_embed_response(response)))


async def batch_embed_contents(call: Call) -> web.StreamResponse:
    model = _model(call)
    ctx, params = await _open(call, wire.batch_embed_decoder)
    response = await call.runtime.gateway.embed(ctx, to_embeddings_request(params, model))
    return _answer(call, _json.encode(to_batch_embed_response(response)))


def _model(call: Call) -> str:
    return call.request.match_info["model"]


async def _open(
    call: Call, decoder: BodyDecoder[ModelRequest]
) -> tuple[RequestContext, ModelRequest]:
    try:
        ctx, request = await open_model_call(call, decoder)
    except InvalidRequestError as exc:
        raise _unsupported_field(exc) or exc from exc.__cause__
    ctx.param_names = PARAM_NAMES
    return ctx, request


def _decode(decoder: BodyDecoder[ModelRequest], body: bytes) -> ModelRequest:
    try:
        return decode_body(decoder, body)
    except InvalidRequestError as exc:
        raise _unsupported_field(exc) or exc from exc.__cause__


def _unsupported_field(error: InvalidRequestError) -> InvalidRequestError | None:
    """A 400 naming the field the request types refused because the gateway cannot carry it."""
    cause = error.__cause__
    found = _UNKNOWN_FIELD.search(str(cause)) if cause is not None else None
    if found is None:
        return None
    path = ".".join(part for part in (error.param, found.group("field")) if part)
    return InvalidRequestError(
        f"{path}: not supported by this gateway's Gemini API, which carries only what every "
        "provider can be sent; remove it.",
        param=path,
    )


def _answer(call: Call, body: bytes) -> web.Response:
    return web.Response(body=body, headers=response_headers(call, is_json=True))


_HELLO = {"contents": [{"role": "user", "parts": [{"text": "Hello!"}]}]}
_ACTIONS = (
    Route(
        "POST",
        f"{_MODELS}/{{model}}:generateContent",
        generate_content,
        Access.MODEL,
        "Gemini generateContent (any provider)",
        Reply("A GenerateContentResponse", google.GenerateContentResponse),
        dialect=Dialect.GEMINI,
        body=wire.GenerateContentParams,
        example=_HELLO,
    ),
    Route(
        "POST",
        f"{_MODELS}/{{model}}:streamGenerateContent",
        stream_generate_content,
        Access.MODEL,
        "Gemini streamGenerateContent (`alt=sse` required)",
        Reply(
            "An SSE stream of GenerateContentResponse pieces (`data: <json>`); the last "
            "carries the finish reasons and usageMetadata; a stream broken upstream ends with "
            "`data: {error: …}`",
            stream=(google.GenerateContentResponse, google.GoogleErrorBody),
        ),
        dialect=Dialect.GEMINI,
        body=wire.GenerateContentParams,
        query=("alt",),
        example=_HELLO,
    ),
    Route(
        "POST",
        f"{_MODELS}/{{model}}:countTokens",
        count_tokens,
        Access.MODEL,
        "Gemini countTokens: the gateway tokenizer's estimate, for any provider",
        Reply("`{totalTokens}`", wire.CountTokensResponse),
        dialect=Dialect.GEMINI,
        body=wire.CountTokensParams,
        example=_HELLO,
    ),
    Route(
        "POST",
        f"{_MODELS}/{{model}}:embedContent",
        embed_content,
        Access.MODEL,
        "Gemini embedContent (text), onto the model's embeddings targets",
        Reply("`{embedding: {values}}`", wire.EmbedContentResponse),
        dialect=Dialect.GEMINI,
        body=wire.EmbedContentParams,
        example={"content": {"parts": [{"text": "Hello!"}]}},
    ),
    Route(
        "POST",
        f"{_MODELS}/{{model}}:batchEmbedContents",
        batch_embed_contents,
        Access.MODEL,
        "Gemini batchEmbedContents (text), one embeddings call",
        Reply("`{embeddings: [{values}]}`", google.BatchEmbedResponse),
        dialect=Dialect.GEMINI,
        body=wire.BatchEmbedContentsParams,
        example={
            "requests": [{"model": "models/my-model", "content": {"parts": [{"text": "Hi"}]}}]
        },
    ),
)
# google-genai calls `/v1/…` by default (`api_version` "v1"), and Google serves both. Its
# model list and model (`GET …/models[/{model}]`) are `routes.models`', with every dialect's.
ROUTES = (
    *_ACTIONS,
    *(replace(route, path=route.path.replace(_MODELS, _V1_MODELS, 1)) for route in _ACTIONS),
)
