"""The OpenAI dialect: `POST /v1/chat/completions`, `POST /v1/embeddings`, and the legacy
`POST /v1/completions`, answered through chat models (`inbound.completions`)."""

from __future__ import annotations

from aiohttp import web

from stellara import _json
from stellara.inbound.completions import (
    PARAM_NAMES,
    TextCompletionStreamWriter,
    to_chat_request,
    to_text_completion,
)
from stellara.inbound.functions import (
    to_function_call_completion,
    to_tools_request,
    uses_functions,
)
from stellara.schema import completions as completions_schema
from stellara.schema.chat import ChatCompletion, ChatCompletionChunk, ChatRequest, request_decoder
from stellara.schema.embeddings import (
    EmbeddingsRequest,
    EmbeddingsResponse,
    embeddings_request_decoder,
)
from stellara.server.intake import open_model_call, response_headers
from stellara.server.schemas import ErrorBody
from stellara.server.spec import Access, Call, Reply, Route
from stellara.server.sse import OpenAIFrames, TextCompletionFrames, relay


async def chat_completions(call: Call) -> web.StreamResponse:
    ctx, chat = await open_model_call(call, request_decoder)
    legacy = uses_functions(chat)
    if legacy:
        chat = to_tools_request(chat)
    gateway = call.runtime.gateway
    if chat.is_streaming:
        frames = OpenAIFrames(include_usage=chat.wants_stream_usage, legacy_functions=legacy)
        return await relay(call, await gateway.open_stream(ctx, chat), frames)
    completion = await gateway.complete(ctx, chat)
    if legacy:
        completion = to_function_call_completion(completion)
    return web.Response(body=_json.encode(completion), headers=response_headers(call, is_json=True))


async def completions(call: Call) -> web.StreamResponse:
    ctx, request = await open_model_call(call, completions_schema.request_decoder)
    chat = to_chat_request(request)
    ctx.param_names = PARAM_NAMES
    gateway = call.runtime.gateway
    if chat.is_streaming:
        frames = TextCompletionFrames(TextCompletionStreamWriter(request))
        return await relay(call, await gateway.open_stream(ctx, chat), frames)
    answer = to_text_completion(await gateway.complete(ctx, chat), request)
    return web.Response(body=_json.encode(answer), headers=response_headers(call, is_json=True))


async def embeddings(call: Call) -> web.StreamResponse:
    ctx, request = await open_model_call(call, embeddings_request_decoder)
    response = await call.runtime.gateway.embed(ctx, request)
    return web.Response(body=_json.encode(response), headers=response_headers(call, is_json=True))


ROUTES = (
    Route(
        "POST",
        "/v1/chat/completions",
        chat_completions,
        Access.MODEL,
        "OpenAI Chat Completions",
        Reply(
            "A chat.completion, or with `stream: true` an SSE stream of chat.completion.chunk "
            "events ending with `data: [DONE]`, or with an error event when the provider breaks "
            "off. The `text/event-stream` schema is each event's `data`",
            ChatCompletion,
            stream=(ChatCompletionChunk, ErrorBody),
        ),
        body=ChatRequest,
        example={"model": "my-model", "messages": [{"role": "user", "content": "Hello!"}]},
    ),
    Route(
        "POST",
        "/v1/completions",
        completions,
        Access.MODEL,
        "OpenAI legacy Completions, answered by the model as a chat: one prompt becomes a user "
        "message; `suffix`, token-array or several prompts, and `best_of` beyond `n` are refused",
        Reply(
            "A text_completion, or with `stream: true` an SSE stream of them ending with "
            "`data: [DONE]` (or an error event when the provider breaks off)",
            completions_schema.TextCompletion,
            stream=(completions_schema.TextCompletion, ErrorBody),
        ),
        body=completions_schema.CompletionRequest,
        example={"model": "my-model", "prompt": "Say this is a test.", "max_tokens": 16},
    ),
    Route(
        "POST",
        "/v1/embeddings",
        embeddings,
        Access.MODEL,
        "OpenAI Embeddings",
        Reply("Embeddings", EmbeddingsResponse),
        body=EmbeddingsRequest,
        example={"model": "my-embedding-model", "input": "Hello!"},
    ),
)
