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
import re
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

import msgspec
import orjson
from aiohttp import web

from stellara.sim import text
from stellara.sim.config import SimConfig
from stellara.sim.faults import StreamCut
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

_T = TypeVar("_T")
_CREATED = 1715367049
_FINGERPRINT = "fp_5f3c7e2a1b"
_SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
_DONE = b"data: [DONE]\n\n"
_ERROR_PATH = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")
_MISSING_FIELD = re.compile(r"missing required field `(?P<field>[^`]+)`")

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


def _error(
    status: int, message: str, *, param: str | None = None, code: str | None = None
) -> web.Response:
    return web.Response(
        status=status,
        body=error_body(status, message, param=param, code=code),
        content_type="application/json",
    )


class _Message(msgspec.Struct, kw_only=True):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None


class _Function(msgspec.Struct, kw_only=True):
    name: str
    description: str | None = None
    parameters: dict[str, Any] = msgspec.field(default_factory=dict)


class _Tool(msgspec.Struct, kw_only=True):
    type: str = "function"
    function: _Function | None = None


class _Named(msgspec.Struct):
    name: str


class _ToolChoice(msgspec.Struct, kw_only=True):
    type: str = "function"
    function: _Named | None = None
    name: str | None = None


class _JsonSchema(msgspec.Struct, kw_only=True):
    name: str = "response"
    schema: dict[str, Any] | None = None


class _ResponseFormat(msgspec.Struct, kw_only=True):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: _JsonSchema | None = None


class _StreamOptions(msgspec.Struct, kw_only=True):
    include_usage: bool | None = None


class _ChatRequest(msgspec.Struct, kw_only=True):
    model: str
    messages: Annotated[list[_Message], msgspec.Meta(min_length=1)]
    n: Annotated[int, msgspec.Meta(ge=1, le=128)] | None = None
    max_tokens: Annotated[int, msgspec.Meta(ge=1)] | None = None
    max_completion_tokens: Annotated[int, msgspec.Meta(ge=1)] | None = None
    stop: str | Annotated[list[str], msgspec.Meta(max_length=4)] | None = None
    stream: bool | None = None
    stream_options: _StreamOptions | None = None
    tools: list[_Tool] | None = None
    tool_choice: str | _ToolChoice | None = None
    response_format: _ResponseFormat | None = None


class _EmbeddingsRequest(msgspec.Struct, kw_only=True):
    model: str
    input: str | Annotated[list[str | int | list[int]], msgspec.Meta(min_length=1)]
    dimensions: Annotated[int, msgspec.Meta(ge=1, le=4096)] | None = None
    encoding_format: Literal["float", "base64"] = "float"


@dataclass(frozen=True, slots=True)
class _ToolCall:
    id: str
    name: str
    arguments: str

    @property
    def fragments(self) -> list[str]:
        # Streamed four characters at a time: one token each, by text.count_tokens' measure.
        return [self.arguments[at : at + 4] for at in range(0, len(self.arguments), 4)]


@dataclass(frozen=True, slots=True)
class _Choice:
    index: int
    pieces: tuple[str, ...]
    finish_reason: str
    tool_call: _ToolCall | None = None

    @property
    def completion_tokens(self) -> int:
        if self.tool_call is not None:
            return text.count_tokens(self.tool_call.arguments)
        return len(self.pieces)


class _InvalidRequestError(Exception):
    def __init__(self, message: str, param: str | None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


AZURE_PREFIX = "/openai/deployments/"


def _azure_error(status: int, message: str) -> web.Response:
    body = orjson.dumps({"error": {"code": str(status), "message": message}})
    return web.Response(status=status, body=body, content_type="application/json")


class OpenAISim:
    """Answers OpenAI-format requests for one simulator.

    Args:
        config: Simulator settings (API key, answer length, per-token delay).
    """

    def __init__(self, config: SimConfig) -> None:
        self._config = config
        self._expected_auth = None if config.api_key is None else f"Bearer {config.api_key}"
        self._ids = itertools.count()
        # A random prefix keeps ids unique across simulator restarts, a counter across requests.
        self._id_prefix = os.urandom(4).hex()
        self._chat_decoder = msgspec.json.Decoder(_ChatRequest)
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
        refusal = self._check_auth(request)
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
                return _error(404, message, code="model_not_found")
            return web.Response(
                body=orjson.dumps(_model_object(model)), content_type="application/json"
            )
        return _error(404, f"Invalid URL ({method} {path})")

    def _check_auth(self, request: web.Request) -> web.Response | None:
        if request.path.startswith(AZURE_PREFIX):
            return self._check_azure(request)
        authorization = request.headers.get("Authorization")
        if authorization is None or not authorization.startswith("Bearer "):
            message = (
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
            )
            return _error(401, message, code="invalid_api_key")
        if self._expected_auth is not None and authorization != self._expected_auth:
            key = _mask(authorization.removeprefix("Bearer "))
            return _error(401, f"Incorrect API key provided: {key}.", code="invalid_api_key")
        return None

    def _check_azure(self, request: web.Request) -> web.Response | None:
        """Azure OpenAI: the same schema under a deployment path, an `api-key` header and a
        required `api-version` query parameter, with Azure's own error wording."""
        if "api-version" not in request.query:
            return _azure_error(404, "Resource not found")
        key = request.headers.get("api-key")
        if key is None or (self._config.api_key is not None and key != self._config.api_key):
            return _azure_error(
                401,
                "Access denied due to invalid subscription key or wrong API endpoint. Make sure "
                "to provide a valid key for an active subscription and use a correct regional "
                "API endpoint for your resource.",
            )
        return None

    async def _chat(
        self, request: web.Request, raw: bytes, cut: StreamCut | None
    ) -> web.StreamResponse:
        try:
            chat = _decode(self._chat_decoder, raw)
            choices = self._choices(chat)
        except _InvalidRequestError as exc:
            return _error(400, exc.message, param=exc.param)
        completion_tokens = sum(choice.completion_tokens for choice in choices)
        prompt_tokens = _prompt_tokens(chat)
        usage = _usage(prompt_tokens, completion_tokens)
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

    def _choices(self, chat: _ChatRequest) -> list[_Choice]:
        prompt = msgspec.json.encode(chat.messages)
        last = chat.messages[-1]
        user_text = next(
            (_text_of(m.content) for m in reversed(chat.messages) if m.role == "user"), ""
        )
        function = _chosen_function(chat)
        choices = []
        for index in range(chat.n or 1):
            seed = text.seed_of(prompt, index.to_bytes(2, "little"))
            if function is not None:
                choices.append(_tool_choice(index, seed, function, user_text))
                continue
            n_tokens = self._config.default_answer_tokens
            if last.role == "tool":
                lead = f"Tool result: {_text_of(last.content)}"
                n_tokens = max(n_tokens, len(text.split_pieces(lead)))
            else:
                lead = text.echo_of(user_text)
            pieces = text.prose_pieces(seed, lead, n_tokens)
            if chat.response_format is not None and chat.response_format.type != "text":
                answer = _json_answer(chat.response_format, "".join(pieces), user_text)
                pieces = text.split_pieces(answer)
            stop = [chat.stop] if isinstance(chat.stop, str) else chat.stop or []
            max_tokens = chat.max_completion_tokens or chat.max_tokens
            completion = text.finish(pieces, max_tokens=max_tokens, stop=stop)
            choices.append(_Choice(index, completion.pieces, completion.finish_reason))
        return choices

    def _embeddings(self, raw: bytes) -> web.Response:
        try:
            request = _decode(self._embeddings_decoder, raw)
            inputs = _embedding_inputs(request.input)
        except _InvalidRequestError as exc:
            return _error(400, exc.message, param=exc.param)
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
        choices: list[_Choice],
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
        choices: list[_Choice],
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


def _deltas(choice: _Choice) -> Iterator[tuple[dict[str, Any], str | None]]:
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


def _decode(decoder: msgspec.json.Decoder[_T], raw: bytes) -> _T:
    try:
        return decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise _InvalidRequestError(str(exc), _param_of(str(exc))) from exc
    except msgspec.DecodeError as exc:
        message = "We could not parse the JSON body of your request. The body must be valid JSON."
        raise _InvalidRequestError(message, None) from exc


def _param_of(message: str) -> str | None:
    found = _ERROR_PATH.search(message)
    path = found.group("path") if found else ""
    missing = _MISSING_FIELD.search(message)
    if missing:
        path = f"{path}.{missing.group('field')}" if path else missing.group("field")
    return path or None


def _chosen_function(chat: _ChatRequest) -> _Function | None:
    if not chat.tools or chat.tool_choice == "none" or chat.messages[-1].role != "user":
        return None
    functions = [tool.function for tool in chat.tools if tool.function is not None]
    if not functions:
        return None
    choice = chat.tool_choice
    wanted = None
    if isinstance(choice, _ToolChoice):
        wanted = choice.function.name if choice.function is not None else choice.name
    if wanted is None:
        return functions[0]
    for function in functions:
        if function.name == wanted:
            return function
    message = f"Invalid value for 'tool_choice': no function named '{wanted}' in 'tools'."
    raise _InvalidRequestError(message, "tool_choice")


def _tool_choice(index: int, seed: bytes, function: _Function, user_text: str) -> _Choice:
    arguments = text.sample_object(function.parameters, text.words_of(user_text))
    call_id = "call_" + text.seed_of(seed, b"call").hex()[:24]
    call = _ToolCall(call_id, function.name, orjson.dumps(arguments).decode())
    return _Choice(index, (), "tool_calls", call)


def _json_answer(response_format: _ResponseFormat, prose: str, user_text: str) -> str:
    json_schema = response_format.json_schema
    if json_schema is not None and json_schema.schema and json_schema.schema.get("properties"):
        value = text.sample_object(json_schema.schema, text.words_of(user_text))
    else:
        value = {"answer": prose}
    return orjson.dumps(value).decode()


def _text_of(content: str | list[dict[str, Any]] | None) -> str:
    if isinstance(content, str):
        return content
    if not content:
        return ""
    return " ".join(part["text"] for part in content if isinstance(part.get("text"), str))


def _prompt_tokens(chat: _ChatRequest) -> int:
    tokens = text.REPLY_PRIMING_TOKENS
    for message in chat.messages:
        tokens += text.MESSAGE_OVERHEAD_TOKENS
        content = message.content
        if isinstance(content, str):
            tokens += text.count_tokens(content)
        elif content:
            for part in content:
                part_text = part.get("text")
                if isinstance(part_text, str):
                    tokens += text.count_tokens(part_text)
                else:
                    tokens += text.IMAGE_TOKENS
        if message.name:
            tokens += 1
        if message.tool_calls:
            tokens += text.count_tokens(orjson.dumps(message.tool_calls).decode())
    if chat.tools:
        tokens += text.count_tokens(msgspec.json.encode(chat.tools).decode())
    return tokens


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


def _choice_object(choice: _Choice) -> dict[str, Any]:
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
            raise _InvalidRequestError(f"'$.input[{at}]' is invalid.", "input")
        inputs.append(item)
    return inputs


def _model_object(model: str) -> dict[str, Any]:
    return {"id": model, "object": "model", "created": _CREATED, "owned_by": "stellara-sim"}


def _mask(key: str) -> str:
    return f"{key[:3]}{'*' * (len(key) - 7)}{key[-4:]}" if len(key) > 8 else "***"
