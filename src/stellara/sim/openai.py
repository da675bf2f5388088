"""The OpenAI wire format: Chat Completions (plain, streamed, tools, JSON mode), embeddings, models.

:class:`OpenAISim` answers whatever path prefix comes before ``/chat/completions``,
``/embeddings`` and ``/models``, so the same handlers serve ``/v1/...`` and OpenAI-compatible
layouts. Requests are decoded into typed structs; a decoding error becomes a 400 with the
offending ``param``, like the real API.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import struct
import time
from collections.abc import Iterator
from typing import Annotated, Any, Literal

import msgspec
import orjson
from aiohttp import web

from stellara.sim import text
from stellara.sim.config import SimConfig
from stellara.sim.faults import StreamCut
from stellara.sim.openai_chat import (
    ChatRequest,
    Choice,
    InvalidRequestError,
    answer,
    decode,
    prompt_tokens,
)
from stellara.sim.peek import peek_body

MODELS = (
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1",
    "gpt-4.1-mini",
    "o3-mini",
    "text-embedding-3-small",
    "text-embedding-3-large",
)
"""Model ids listed by ``GET /v1/models``; chat and embeddings accept any model name."""

DEFAULT_DIMENSIONS = 256
"""Embedding size when the request gives no ``dimensions``."""

_CREATED = 1715367049
_FINGERPRINT = "fp_5f3c7e2a1b"
_SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
_DONE = b"data: [DONE]\n\n"

# status -> (message, type, code) of the real API's error bodies.
_STATUS_ERRORS: dict[int, tuple[str, str, str | None]] = {
    400: ("Invalid request.", "invalid_request_error", None),
    401: ("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"),
    403: ("You are not allowed to use this model.", "invalid_request_error", "permission_denied"),
    404: (
        "The model does not exist or you do not have access to it.",
        "invalid_request_error",
        "model_not_found",
    ),
    429: (
        "Rate limit reached for requests. Please try again in 1s.",
        "rate_limit_exceeded",
        "rate_limit_exceeded",
    ),
    500: (
        "The server had an error while processing your request. Sorry about that!",
        "server_error",
        None,
    ),
    502: ("Bad gateway.", "server_error", None),
    503: (
        "The engine is currently overloaded, please try again later.",
        "server_error",
        "overloaded",
    ),
    504: ("Gateway timeout.", "server_error", "timeout"),
}


def error_body(
    status: int, message: str | None = None, *, param: str | None = None, code: str | None = None
) -> bytes:
    """Return an OpenAI error body for ``status``, with the real API's defaults.

    Args:
        status: HTTP status; picks the default message, ``type`` and ``code``.
        message: Replaces the default message.
        param: The request field at fault.
        code: Replaces the default code.
    """
    fallback = _STATUS_ERRORS[500 if status >= 500 else 400]
    default_message, kind, default_code = _STATUS_ERRORS.get(status, fallback)
    error = {
        "message": message or default_message,
        "type": kind,
        "param": param,
        "code": code or default_code,
    }
    return orjson.dumps({"error": error})


def error_response(
    status: int, message: str, *, param: str | None = None, code: str | None = None
) -> web.Response:
    """Answer ``status`` with an OpenAI error body; arguments as :func:`error_body`."""
    return web.Response(
        status=status,
        body=error_body(status, message, param=param, code=code),
        content_type="application/json",
    )


class _EmbeddingsRequest(msgspec.Struct, kw_only=True):
    model: str
    input: str | Annotated[list[str | int | list[int]], msgspec.Meta(min_length=1)]
    dimensions: Annotated[int, msgspec.Meta(ge=1, le=4096)] | None = None
    encoding_format: Literal["float", "base64"] = "float"


AZURE_PREFIX = "/openai/deployments/"


def _azure_error(status: int, message: str) -> web.Response:
    body = orjson.dumps({"error": {"code": str(status), "message": message}})
    return web.Response(status=status, body=body, content_type="application/json")


def auth_refusal(request: web.Request, api_key: str | None) -> web.Response | None:
    """The OpenAI API's 401 for a request without the right key, or ``None`` to go on.

    Every OpenAI route checks with this; under Azure's deployment paths, Azure's rules apply.

    Args:
        request: The request to check.
        api_key: The only key accepted; ``None`` accepts any bearer token.
    """
    if request.path.startswith(AZURE_PREFIX):
        return _azure_refusal(request, api_key)
    authorization = request.headers.get("Authorization")
    if authorization is None or not authorization.startswith("Bearer "):
        message = (
            "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
        )
        return error_response(401, message, code="invalid_api_key")
    if api_key is not None and authorization != f"Bearer {api_key}":
        key = _mask(authorization.removeprefix("Bearer "))
        return error_response(401, f"Incorrect API key provided: {key}.", code="invalid_api_key")
    return None


def _azure_refusal(request: web.Request, api_key: str | None) -> web.Response | None:
    """Azure OpenAI: the same schema under a deployment path, an `api-key` header and a
    required `api-version` query parameter, with Azure's own error wording."""
    if "api-version" not in request.query:
        return _azure_error(404, "Resource not found")
    key = request.headers.get("api-key")
    if key is None or (api_key is not None and key != api_key):
        return _azure_error(
            401,
            "Access denied due to invalid subscription key or wrong API endpoint. Make sure "
            "to provide a valid key for an active subscription and use a correct regional "
            "API endpoint for your resource.",
        )
    return None


class OpenAISim:
    """Answers OpenAI-format requests for one simulator.

    Args:
        config: Simulator settings (API key, answer length, per-token delay).
    """

    def __init__(self, config: SimConfig) -> None:
        self._config = config
        self._ids = itertools.count()
        # A random prefix keeps ids unique across simulator restarts, a counter across requests.
        self._id_prefix = os.urandom(4).hex()
        self._chat_decoder = msgspec.json.Decoder(ChatRequest)
        self._embeddings_decoder = msgspec.json.Decoder(_EmbeddingsRequest)
        self._model_list = orjson.dumps(
            {"object": "list", "data": [_model_object(model) for model in MODELS]}
        )

    def serves(self, path: str) -> bool:
        """Every path no other dialect claims is answered in the OpenAI format."""
        return True

    def peek(self, path: str, raw: bytes) -> tuple[str | None, bool]:
        """Return the request's ``(model, is_stream)`` for fault matching, tolerating bad input."""
        return peek_body(raw)

    def error_body(self, status: int) -> bytes:
        """Return the default OpenAI error body for ``status``."""
        return error_body(status)

    async def handle(
        self, request: web.Request, raw: bytes, *, cut: StreamCut | None
    ) -> web.StreamResponse:
        """Answer one request.

        Args:
            request: The HTTP request.
            raw: Its body.
            cut: When set, the stream breaks off after ``cut.after_chunks`` content chunks.
        """
        refusal = auth_refusal(request, self._config.api_key)
        if refusal is not None:
            return refusal
        method, path = request.method, request.path
        if method == "POST" and path.endswith("/chat/completions"):
            return await self._chat(request, raw, cut)
        if method == "POST" and path.endswith("/embeddings"):
            return self._embeddings(raw)
        if method == "GET" and path.endswith("/models"):
            return web.Response(body=self._model_list, content_type="application/json")
        _, found, model = path.rpartition("/models/")
        if method == "GET" and found and model:
            if model not in MODELS:
                message = f"The model `{model}` does not exist or you do not have access to it."
                return error_response(404, message, code="model_not_found")
            return web.Response(
                body=orjson.dumps(_model_object(model)), content_type="application/json"
            )
        return error_response(404, f"Invalid URL ({method} {path})")

    async def _chat(
        self, request: web.Request, raw: bytes, cut: StreamCut | None
    ) -> web.StreamResponse:
        try:
            chat = decode(self._chat_decoder, raw)
            choices = answer(chat, default_answer_tokens=self._config.default_answer_tokens)
        except InvalidRequestError as exc:
            return error_response(400, exc.message, param=exc.param)
        completion_tokens = sum(choice.completion_tokens for choice in choices)
        usage = _usage(prompt_tokens(chat), completion_tokens)
        head: dict[str, Any] = {
            "id": f"chatcmpl-{self._id_prefix}{next(self._ids):012x}",
            "object": "chat.completion.chunk" if chat.stream else "chat.completion",
            "created": int(time.time()),
            "model": chat.model,
            "service_tier": "default",
            "system_fingerprint": _FINGERPRINT,
        }
        if chat.stream:
            include_usage = chat.stream_options is not None and chat.stream_options.include_usage
            writer = _ChunkWriter(head, include_usage=bool(include_usage))
            delay_s = self._config.per_token_ms / 1000
            return await writer.send(request, choices, usage, cut=cut, delay_s=delay_s)
        if self._config.per_token_ms > 0:
            await asyncio.sleep(self._config.per_token_ms * completion_tokens / 1000)
        head["choices"] = [_choice_object(choice) for choice in choices]
        head["usage"] = usage
        return web.Response(body=orjson.dumps(head), content_type="application/json")

    def _embeddings(self, raw: bytes) -> web.Response:
        try:
            request = decode(self._embeddings_decoder, raw)
            inputs = _embedding_inputs(request.input)
        except InvalidRequestError as exc:
            return error_response(400, exc.message, param=exc.param)
        dimensions = request.dimensions or DEFAULT_DIMENSIONS
        data = []
        for index, item in enumerate(inputs):
            vector = text.embed(item, dimensions)
            embedding: list[float] | str = vector
            if request.encoding_format == "base64":
                embedding = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        tokens = sum(text.count_tokens(item) for item in inputs)
        body = {
            "object": "list",
            "data": data,
            "model": request.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return web.Response(body=orjson.dumps(body), content_type="application/json")


class _ChunkWriter:
    """Writes one chat completion as ``chat.completion.chunk`` SSE events, as they are made."""

    def __init__(self, head: dict[str, Any], *, include_usage: bool) -> None:
        if include_usage:
            # The real API puts "usage": null on every chunk but the last when usage is asked for.
            head["usage"] = None
        self._head = head
        self._prefix = b"data: " + orjson.dumps(head)[:-1] + b',"choices":['
        self._include_usage = include_usage

    async def send(
        self,
        request: web.Request,
        choices: list[Choice],
        usage: dict[str, Any],
        *,
        cut: StreamCut | None,
        delay_s: float,
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers=_SSE_HEADERS)
        try:
            await response.prepare(request)
            await self._write_events(request, response, choices, usage, cut, delay_s)
        except ConnectionResetError:
            pass  # the client went away mid-stream, as clients do; nothing left to answer
        return response

    async def _write_events(
        self,
        request: web.Request,
        response: web.StreamResponse,
        choices: list[Choice],
        usage: dict[str, Any],
        cut: StreamCut | None,
        delay_s: float,
    ) -> None:
        sent = 0
        for choice in choices:
            for delta, finish_reason in _deltas(choice):
                is_content = finish_reason is None and "role" not in delta
                if cut is not None and (
                    finish_reason is not None or (is_content and sent == cut.after_chunks)
                ):
                    await cut.break_off(request)
                    return
                if is_content:
                    sent += 1
                    if delay_s > 0:
                        await asyncio.sleep(delay_s)
                event = {
                    "index": choice.index,
                    "delta": delta,
                    "logprobs": None,
                    "finish_reason": finish_reason,
                }
                await response.write(self._prefix + orjson.dumps(event) + b"]}\n\n")
        if self._include_usage:
            last = {**self._head, "choices": [], "usage": usage}
            await response.write(b"data: " + orjson.dumps(last) + b"\n\n")
        await response.write(_DONE)
        await response.write_eof()


def _deltas(choice: Choice) -> Iterator[tuple[dict[str, Any], str | None]]:
    call = choice.tool_call
    if call is None:
        yield {"role": "assistant", "content": "", "refusal": None}, None
        for piece in choice.pieces:
            yield {"content": piece}, None
    else:
        function = {"name": call.name, "arguments": ""}
        first = {"index": 0, "id": call.id, "type": "function", "function": function}
        yield {"role": "assistant", "content": None, "tool_calls": [first], "refusal": None}, None
        for fragment in call.fragments:
            yield {"tool_calls": [{"index": 0, "function": {"arguments": fragment}}]}, None
    yield {}, choice.finish_reason


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _choice_object(choice: Choice) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": None if choice.tool_call else "".join(choice.pieces),
        "refusal": None,
        "annotations": [],
    }
    call = choice.tool_call
    if call is not None:
        function = {"name": call.name, "arguments": call.arguments}
        message["tool_calls"] = [{"id": call.id, "type": "function", "function": function}]
    return {
        "index": choice.index,
        "message": message,
        "logprobs": None,
        "finish_reason": choice.finish_reason,
    }


def _embedding_inputs(raw_input: str | list[str | int | list[int]]) -> list[str]:
    items = [raw_input] if isinstance(raw_input, str) else raw_input
    if all(isinstance(item, int) for item in items):
        # One input given as token ids.
        return [" ".join(str(item) for item in items)]
    inputs = []
    for at, item in enumerate(items):
        if isinstance(item, list):
            item = " ".join(str(token) for token in item)
        if not isinstance(item, str) or not item:
            raise InvalidRequestError(f"'$.input[{at}]' is invalid.", "input")
        inputs.append(item)
    return inputs


def _model_object(model: str) -> dict[str, Any]:
    return {"id": model, "object": "model", "created": _CREATED, "owned_by": "stellara-sim"}


def _mask(key: str) -> str:
    return f"{key[:3]}{'*' * (len(key) - 7)}{key[-4:]}" if len(key) > 8 else "***"
