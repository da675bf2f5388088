"""The Anthropic wire format: the Messages API (plain, streamed, tools), at ``/v1/messages``,
and its token counting, at ``/v1/messages/count_tokens``.

:class:`AnthropicSim` validates requests the way the real API does: unknown fields, a missing
``max_tokens``, roles, ``tool_result`` blocks without their ``tool_use``, the API key (in
``x-api-key`` or, as SDKs since 2.0 send it, ``Authorization: Bearer``) and the
``anthropic-version`` header, whose value decides what is refused (version 2026-10-21 refuses
``temperature``, ``top_p`` and ``top_k``); a tool ``input_schema`` that is not an object,
``strict`` tools on models older than structured outputs (``claude-3…``, Sonnet and Opus 4.0),
and a forced ``tool_choice`` with thinking on.
It answers with the same deterministic text as the OpenAI format (:mod:`stellara.sim.text`),
as a ``message`` object or as Anthropic's event stream.

Tools are called as the real API's ``tool_choice`` demands: ``tool`` always calls the named
tool; ``any`` always calls one, the first before any tool result came back and the last after
(a deterministic stand-in for the model's choice); ``auto`` (or none) calls the first tool
until results came back, then answers in text. A call's ``input`` is sampled from the tool's
``input_schema`` (:func:`stellara.sim.text.sample_object`), so it always matches the schema.
A token count takes only the prompt's fields (``max_tokens`` or ``stream`` are refused, as the
real API refuses them) and answers the ``input_tokens`` the same prompt's message reports.

It is written from Anthropic's API reference, not from the gateway's wire types, so that a
mistake in those types shows up as a failing test instead of being mirrored here.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

import msgspec
import orjson
from aiohttp import web
from msgspec import Meta, Struct

from stellara.sim import text
from stellara.sim.config import SimConfig
from stellara.sim.faults import StreamCut
from stellara.sim.peek import peek_body

_SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
_ERROR_PATH = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")
_MISSING_FIELD = re.compile(r"missing required field `(?P<field>[^`]+)`")
_UNKNOWN_FIELD = re.compile(r"unknown field `(?P<field>[^`]+)`")
_INDEX = re.compile(r"\[(\d+)\]")
_COUNT_PATH = "/v1/messages/count_tokens"
_VERSIONS = ("2023-01-01", "2023-06-01", "2026-10-21")
_NO_SAMPLING_SINCE = "2026-10-21"
"""The API version that refuses ``temperature``, ``top_p`` and ``top_k``, even at defaults."""
_NO_STRICT_TOOLS = re.compile(r"^claude-(3|(sonnet|opus)-4-(0|2025))")
"""Models from before structured outputs, which refuse ``strict`` tools."""

# status -> (type, message) of the real API's error bodies.
_STATUS_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "There was an issue with the format of your request."),
    401: ("authentication_error", "invalid x-api-key"),
    402: ("billing_error", "Your credit balance is too low to access the Anthropic API."),
    403: ("permission_error", "Your API key does not have permission to use this resource."),
    404: ("not_found_error", "The requested resource could not be found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of requests has exceeded your per-minute rate limit."),
    500: ("api_error", "Internal server error"),
    504: ("timeout_error", "Request timed out"),
    529: ("overloaded_error", "Overloaded"),
}

# ---------------------------------------------------------------- request, as the API defines it


class _Strict(Struct, kw_only=True, forbid_unknown_fields=True):
    """The real API refuses fields it does not know ("Extra inputs are not permitted")."""


class _Text(_Strict, tag_field="type", tag="text"):
    text: str
    cache_control: dict[str, Any] | None = None
    citations: list[dict[str, Any]] | None = None


class _Base64Image(_Strict, tag_field="type", tag="base64"):
    media_type: Literal["image/jpeg", "image/png", "image/gif", "image/webp"]
    data: Annotated[str, Meta(min_length=1)]


class _URLImage(_Strict, tag_field="type", tag="url"):
    url: Annotated[str, Meta(pattern=r"^https?://")]


class _Image(_Strict, tag_field="type", tag="image"):
    source: _Base64Image | _URLImage
    cache_control: dict[str, Any] | None = None


class _Base64PDF(_Strict, tag_field="type", tag="base64"):
    media_type: Literal["application/pdf"]
    data: Annotated[str, Meta(min_length=1)]


class _PlainText(_Strict, tag_field="type", tag="text"):
    media_type: Literal["text/plain"]
    data: str


class _URLPDF(_Strict, tag_field="type", tag="url"):
    url: str


class _Document(_Strict, tag_field="type", tag="document"):
    source: _Base64PDF | _PlainText | _URLPDF
    title: str | None = None
    context: str | None = None
    citations: dict[str, Any] | None = None
    cache_control: dict[str, Any] | None = None


class _ToolUse(_Strict, tag_field="type", tag="tool_use"):
    id: str
    name: str
    input: dict[str, Any]
    cache_control: dict[str, Any] | None = None


class _ToolResult(_Strict, tag_field="type", tag="tool_result"):
    tool_use_id: str
    content: str | list[_Text | _Image | _Document] | None = None
    is_error: bool | None = None
    cache_control: dict[str, Any] | None = None


class _Thinking(_Strict, tag_field="type", tag="thinking"):
    thinking: str
    signature: str


class _RedactedThinking(_Strict, tag_field="type", tag="redacted_thinking"):
    data: str


_Block = _Text | _Image | _Document | _ToolUse | _ToolResult | _Thinking | _RedactedThinking


class _Message(_Strict):
    role: Literal["user", "assistant"]
    content: str | list[_Block]


class _Tool(_Strict):
    name: Annotated[str, Meta(pattern=r"^[a-zA-Z0-9_-]{1,128}$")]
    input_schema: dict[str, Any]
    description: str | None = None
    type: Literal["custom"] | None = None
    strict: bool | None = None
    cache_control: dict[str, Any] | None = None


class _ChooseAuto(_Strict, tag_field="type", tag="auto"):
    disable_parallel_tool_use: bool | None = None


class _ChooseAny(_Strict, tag_field="type", tag="any"):
    disable_parallel_tool_use: bool | None = None


class _ChooseTool(_Strict, tag_field="type", tag="tool"):
    name: str
    disable_parallel_tool_use: bool | None = None


class _ChooseNone(_Strict, tag_field="type", tag="none"):
    pass


class _Metadata(_Strict):
    user_id: Annotated[str, Meta(max_length=256)] | None = None


class _ThinkingConfig(_Strict):
    type: Literal["enabled", "disabled"]
    budget_tokens: Annotated[int, Meta(ge=1024)] | None = None


class _Prompt(_Strict, kw_only=True):
    """What `POST /v1/messages/count_tokens` takes: the prompt, without generation settings."""

    model: Annotated[str, Meta(min_length=1)]
    messages: Annotated[list[_Message], Meta(min_length=1)]
    system: str | list[_Text] | None = None
    tools: list[_Tool] | None = None
    tool_choice: _ChooseAuto | _ChooseAny | _ChooseTool | _ChooseNone | None = None
    thinking: _ThinkingConfig | None = None


class _Request(_Prompt, kw_only=True):
    max_tokens: Annotated[int, Meta(ge=1)]
    stop_sequences: list[str] | None = None
    stream: bool | None = None
    temperature: Annotated[float, Meta(ge=0, le=1)] | None = None
    top_p: Annotated[float, Meta(ge=0, le=1)] | None = None
    top_k: Annotated[int, Meta(ge=0)] | None = None
    metadata: _Metadata | None = None
    service_tier: Literal["auto", "standard_only"] | None = None


_PromptT = TypeVar("_PromptT", bound=_Prompt)

# ---------------------------------------------------------------- answers


@dataclass(frozen=True, slots=True)
class _ToolCall:
    id: str
    name: str
    input: dict[str, Any]

    @property
    def fragments(self) -> list[str]:
        # Like the real API: an empty first fragment, then a few characters at a time.
        arguments = orjson.dumps(self.input).decode()
        return ["", *(arguments[at : at + 4] for at in range(0, len(arguments), 4))]


@dataclass(frozen=True, slots=True)
class _Answer:
    pieces: tuple[str, ...]
    stop_reason: str
    stop_sequence: str | None = None
    tool_call: _ToolCall | None = None

    @property
    def output_tokens(self) -> int:
        tool_tokens = 0
        if self.tool_call is not None:
            tool_tokens = text.count_tokens(orjson.dumps(self.tool_call.input).decode())
        return len(self.pieces) + tool_tokens


class _InvalidRequestError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def error_body(status: int, message: str | None = None) -> bytes:
    """Return an Anthropic error body for ``status``, with the real API's defaults.

    Args:
        status: HTTP status; picks the error ``type`` and the default message.
        message: Replaces the default message.
    """
    fallback = _STATUS_ERRORS[500 if status >= 500 else 400]
    kind, default_message = _STATUS_ERRORS.get(status, fallback)
    error = {"type": kind, "message": message or default_message}
    request_id = "req_011" + os.urandom(10).hex()
    return orjson.dumps({"type": "error", "error": error, "request_id": request_id})


def _error(status: int, message: str) -> web.Response:
    return web.Response(
        status=status, body=error_body(status, message), content_type="application/json"
    )


class AnthropicSim:
    """Answers Anthropic-format requests for one simulator.

    Args:
        config: Simulator settings (API key, answer length, per-token delay).
    """

    def __init__(self, config: SimConfig) -> None:
        self._config = config
        self._ids = itertools.count()
        # A random prefix keeps ids unique across simulator restarts, a counter across requests.
        self._id_prefix = os.urandom(4).hex()
        self._decoder = msgspec.json.Decoder(_Request)
        self._count_decoder = msgspec.json.Decoder(_Prompt)

    def serves(self, path: str) -> bool:
        """Requests to ``…/v1/messages`` and ``…/v1/messages/count_tokens`` are in the
        Anthropic format."""
        return path.endswith(("/v1/messages", _COUNT_PATH))

    def peek(self, path: str, raw: bytes) -> tuple[str | None, bool]:
        """Return the request's ``(model, is_stream)`` for fault matching, tolerating bad input."""
        return peek_body(raw)

    def error_body(self, status: int) -> bytes:
        """Return the default Anthropic error body for ``status``."""
        return error_body(status)

    async def handle(
        self, request: web.Request, raw: bytes, *, cut: StreamCut | None
    ) -> web.StreamResponse:
        """Answer one request.

        Args:
            request: The HTTP request.
            raw: Its body.
            cut: When set, the stream breaks off after ``cut.after_chunks`` content deltas.
        """
        refusal = self._check_headers(request)
        if refusal is not None:
            return refusal
        if request.method != "POST":
            return _error(405, f"Method {request.method} is not allowed for {request.path}.")
        if request.path.endswith(_COUNT_PATH):
            return self._count(raw)
        try:
            messages_request = _decode(self._decoder, raw)
            _validate(messages_request)
            if request.headers["anthropic-version"] >= _NO_SAMPLING_SINCE:
                _validate_2026_10_21(messages_request)
            answer = self._answer(messages_request)
        except _InvalidRequestError as exc:
            return _error(400, exc.message)
        message: dict[str, Any] = {
            "id": f"msg_01{self._id_prefix}{next(self._ids):014x}",
            "type": "message",
            "role": "assistant",
            "model": messages_request.model,
        }
        input_tokens = _input_tokens(messages_request)
        delay_s = self._config.per_token_ms / 1000
        if messages_request.stream:
            events = _events(message, answer, input_tokens)
            return await _send_events(request, events, cut=cut, delay_s=delay_s)
        if delay_s > 0:
            await asyncio.sleep(delay_s * answer.output_tokens)
        message["content"] = _content_blocks(answer)
        message["stop_reason"] = answer.stop_reason
        message["stop_sequence"] = answer.stop_sequence
        message["usage"] = _usage(input_tokens, answer.output_tokens)
        return web.Response(body=orjson.dumps(message), content_type="application/json")

    def _count(self, raw: bytes) -> web.Response:
        """`{"input_tokens": N}`: what the same prompt's message would report as input."""
        try:
            prompt = _decode(self._count_decoder, raw)
            _validate(prompt)
        except _InvalidRequestError as exc:
            return _error(400, exc.message)
        body = orjson.dumps({"input_tokens": _input_tokens(prompt)})
        return web.Response(body=body, content_type="application/json")

    def _check_headers(self, request: web.Request) -> web.Response | None:
        # An API key comes as `x-api-key`, or as a bearer token, which recent SDKs send.
        key = request.headers.get("x-api-key")
        authorization = request.headers.get("Authorization", "")
        if key is None and authorization.startswith("Bearer "):
            key = authorization.removeprefix("Bearer ")
        if key is None:
            return _error(401, "x-api-key header is required")
        if self._config.api_key is not None and key != self._config.api_key:
            return _error(401, "invalid x-api-key")
        version = request.headers.get("anthropic-version")
        if version is None:
            return _error(400, "anthropic-version: header is required")
        if version not in _VERSIONS:
            return _error(400, f"anthropic-version: invalid version {version!r}")
        return None

    def _answer(self, messages_request: _Request) -> _Answer:
        turns = _turns(messages_request.messages)
        role, blocks = turns[-1]
        seed = text.seed_of(msgspec.json.encode(messages_request.messages))
        results = [b for b in blocks if isinstance(b, _ToolResult)] if role == "user" else []
        user_text = next((t for r, b in reversed(turns) if r == "user" and (t := _text_of(b))), "")
        tool = _chosen_tool(messages_request, role, has_results=bool(results))
        if tool is not None:
            arguments = text.sample_object(tool.input_schema, text.words_of(user_text))
            call = _ToolCall(
                "toolu_01" + text.seed_of(seed, b"tool").hex()[:22], tool.name, arguments
            )
            # Left to choose, Claude usually says what it is about to do before the call.
            choice = messages_request.tool_choice
            is_chosen = choice is None or isinstance(choice, _ChooseAuto)
            lead = tuple(text.split_pieces(f"I will use {tool.name}.")) if is_chosen else ()
            return _Answer(lead, "tool_use", tool_call=call)
        n_tokens = self._config.default_answer_tokens
        if results:
            lead_text = "Tool result: " + " ".join(_result_text(result) for result in results)
            n_tokens = max(n_tokens, len(text.split_pieces(lead_text)))
        else:
            lead_text = text.echo_of(user_text)
        pieces = text.prose_pieces(seed, lead_text, n_tokens)
        return _finish(pieces, messages_request.max_tokens, messages_request.stop_sequences or [])


def _decode(decoder: msgspec.json.Decoder[_PromptT], raw: bytes) -> _PromptT:
    try:
        return decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise _InvalidRequestError(_api_message(str(exc))) from exc
    except msgspec.DecodeError as exc:
        raise _InvalidRequestError("The request body is not valid JSON.") from exc


def _api_message(message: str) -> str:
    """A msgspec error in the real API's words: ``messages.0.role: Input should be …``."""
    found = _ERROR_PATH.search(message)
    path = _INDEX.sub(r".\1", found.group("path")) if found else ""
    detail = _ERROR_PATH.sub("", message)
    for pattern, wording in ((_MISSING_FIELD, "Field required"), (_UNKNOWN_FIELD, None)):
        named = pattern.search(message)
        if named:
            field = named.group("field")
            path = f"{path}.{field}" if path else field
            detail = wording or "Extra inputs are not permitted"
    return f"{path}: {detail}" if path else detail


def _turns(messages: list[_Message]) -> list[tuple[str, list[_Block]]]:
    """The conversation with consecutive same-role messages combined, as the real API does."""
    turns: list[tuple[str, list[_Block]]] = []
    for message in messages:
        content = message.content
        blocks: list[_Block] = [_Text(text=content)] if isinstance(content, str) else content
        if turns and turns[-1][0] == message.role:
            turns[-1][1].extend(blocks)
        else:
            turns.append((message.role, list(blocks)))
    return turns


def _validate(messages_request: _Prompt) -> None:
    last = len(messages_request.messages) - 1
    for at, message in enumerate(messages_request.messages):
        content = message.content
        is_empty = content == "" or content == []
        if is_empty and not (at == last and message.role == "assistant"):
            raise _InvalidRequestError(
                f"messages.{at}: all messages must have non-empty content except for the "
                "optional final assistant message"
            )
        if isinstance(content, list) and any(isinstance(b, _Text) and not b.text for b in content):
            raise _InvalidRequestError("messages: text content blocks must be non-empty")
    _check_tool_pairs(_turns(messages_request.messages))
    _check_tools(messages_request)


def _check_tools(messages_request: _Prompt) -> None:
    tools = messages_request.tools or []
    for at, tool in enumerate(tools):
        if tool.input_schema.get("type") != "object":
            raise _InvalidRequestError(
                f"tools.{at}.custom.input_schema.type: Input should be 'object'"
            )
    choice = messages_request.tool_choice
    if isinstance(choice, _ChooseTool) and choice.name not in {tool.name for tool in tools}:
        raise _InvalidRequestError(f"tool_choice.name: Tool '{choice.name}' not found in tools")
    model = messages_request.model
    if any(tool.strict for tool in tools) and _NO_STRICT_TOOLS.match(model):
        raise _InvalidRequestError(f"'{model}' does not support strict tools.")
    thinking = messages_request.thinking
    is_forced = isinstance(choice, _ChooseAny | _ChooseTool)
    if is_forced and thinking is not None and thinking.type == "enabled":
        raise _InvalidRequestError("Thinking may not be enabled when tool_choice forces tool use.")


def _validate_2026_10_21(messages_request: _Request) -> None:
    """What API version 2026-10-21 refuses that 2023-06-01 took."""
    for name in ("temperature", "top_p", "top_k"):
        if getattr(messages_request, name) is not None:
            raise _InvalidRequestError(f"{name}: Extra inputs are not permitted")
    for at, message in enumerate(messages_request.messages):
        content = message.content
        if isinstance(content, str):
            continue
        for index, block in enumerate(content):
            if message.role == "assistant" and isinstance(block, _Document):
                raise _InvalidRequestError(
                    f"messages.{at}.content.{index}: document blocks are not allowed in "
                    "assistant messages"
                )
            if message.role == "user" and isinstance(block, _Text) and block.citations:
                raise _InvalidRequestError(
                    f"messages.{at}.content.{index}.citations: citations are not allowed in "
                    "user messages"
                )


def _check_tool_pairs(turns: list[tuple[str, list[_Block]]]) -> None:
    """Each ``tool_use`` needs its ``tool_result`` in the next turn, and only there."""
    pending: set[str] = set()
    for at, (role, blocks) in enumerate(turns):
        if role == "assistant":
            pending = {block.id for block in blocks if isinstance(block, _ToolUse)}
            continue
        answered = {block.tool_use_id for block in blocks if isinstance(block, _ToolResult)}
        if answered - pending:
            raise _InvalidRequestError(
                f"messages.{at}.content: unexpected `tool_use_id` found in `tool_result` blocks: "
                f"{min(answered - pending)}. Each `tool_result` block must have a corresponding "
                "`tool_use` block in the previous message."
            )
        if pending - answered:
            raise _InvalidRequestError(
                f"messages.{at}: `tool_use` ids were found without `tool_result` blocks "
                f"immediately after: {min(pending - answered)}. Each `tool_use` block must have "
                "a corresponding `tool_result` block in the next message."
            )
        pending = set()


def _chosen_tool(messages_request: _Prompt, role: str, *, has_results: bool) -> _Tool | None:
    tools = messages_request.tools
    choice = messages_request.tool_choice
    if not tools or isinstance(choice, _ChooseNone) or role != "user":
        return None
    if isinstance(choice, _ChooseTool):
        return next(tool for tool in tools if tool.name == choice.name)
    if isinstance(choice, _ChooseAny):
        return tools[-1] if has_results else tools[0]
    return None if has_results else tools[0]


def _finish(pieces: list[str], max_tokens: int, stop: list[str]) -> _Answer:
    completion = text.finish(pieces, max_tokens=max_tokens, stop=stop)
    # text.finish cuts just before the earliest stop string; find which one it was.
    full = "".join(pieces[:max_tokens])
    cut = len(completion.text)
    matched = next((s for s in stop if s and full.startswith(s, cut)), None)
    if matched is not None:
        return _Answer(completion.pieces, "stop_sequence", matched)
    reason = "max_tokens" if completion.finish_reason == "length" else "end_turn"
    return _Answer(completion.pieces, reason)


def _text_of(blocks: list[_Block]) -> str:
    return " ".join(block.text for block in blocks if isinstance(block, _Text))


def _result_text(result: _ToolResult) -> str:
    content = result.content
    if content is None or isinstance(content, str):
        return content or ""
    return " ".join(block.text for block in content if isinstance(block, _Text))


def _input_tokens(messages_request: _Prompt) -> int:
    tokens = text.REPLY_PRIMING_TOKENS
    system = messages_request.system
    if system:
        tokens += text.count_tokens(system if isinstance(system, str) else _text_of(list(system)))
    for message in messages_request.messages:
        tokens += text.MESSAGE_OVERHEAD_TOKENS
        content = message.content
        if isinstance(content, str):
            tokens += text.count_tokens(content)
        else:
            tokens += sum(_block_tokens(block) for block in content)
    if messages_request.tools:
        tokens += text.count_tokens(msgspec.json.encode(messages_request.tools).decode())
    return tokens


def _block_tokens(block: _Block) -> int:
    if isinstance(block, _Text):
        return text.count_tokens(block.text)
    if isinstance(block, _ToolUse):
        return text.count_tokens(orjson.dumps(block.input).decode())
    if isinstance(block, _ToolResult):
        content = block.content
        if isinstance(content, list):
            return sum(_block_tokens(part) for part in content)
        return text.count_tokens(content or "")
    if isinstance(block, _Thinking):
        return text.count_tokens(block.thinking)
    return text.IMAGE_TOKENS  # images, documents, redacted thinking


def _usage(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def _content_blocks(answer: _Answer) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if answer.pieces:
        blocks.append({"type": "text", "text": "".join(answer.pieces)})
    call = answer.tool_call
    if call is not None:
        blocks.append({"type": "tool_use", "id": call.id, "name": call.name, "input": call.input})
    return blocks


Event = tuple[str, dict[str, Any], bool]
"""An SSE event: its name, its data, and whether it is a content delta (for a ``cut``)."""


def _events(message: dict[str, Any], answer: _Answer, input_tokens: int) -> Iterator[Event]:
    """The real API's event sequence for ``answer``."""
    start = {**message, "content": [], "stop_reason": None, "stop_sequence": None}
    start["usage"] = _usage(input_tokens, 1)
    yield "message_start", {"type": "message_start", "message": start}, False
    index = 0
    if answer.pieces:
        deltas = [{"type": "text_delta", "text": piece} for piece in answer.pieces]
        yield from _block_events(index, {"type": "text", "text": ""}, deltas)
        index += 1
    call = answer.tool_call
    if call is not None:
        block = {"type": "tool_use", "id": call.id, "name": call.name, "input": {}}
        deltas = [{"type": "input_json_delta", "partial_json": part} for part in call.fragments]
        yield from _block_events(index, block, deltas)
    delta = {"stop_reason": answer.stop_reason, "stop_sequence": answer.stop_sequence}
    usage = {"output_tokens": answer.output_tokens}
    yield "message_delta", {"type": "message_delta", "delta": delta, "usage": usage}, False
    yield "message_stop", {"type": "message_stop"}, False


def _block_events(
    index: int, block: dict[str, Any], deltas: list[dict[str, Any]]
) -> Iterator[Event]:
    start = {"type": "content_block_start", "index": index, "content_block": block}
    yield "content_block_start", start, False
    if index == 0:
        yield "ping", {"type": "ping"}, False  # the real API pings after the first block start
    for delta in deltas:
        yield (
            "content_block_delta",
            {"type": "content_block_delta", "index": index, "delta": delta},
            True,
        )
    yield "content_block_stop", {"type": "content_block_stop", "index": index}, False


async def _send_events(
    request: web.Request, events: Iterator[Event], *, cut: StreamCut | None, delay_s: float
) -> web.StreamResponse:
    response = web.StreamResponse(headers=_SSE_HEADERS)
    try:
        await response.prepare(request)
        sent = 0
        for name, data, is_content in events:
            if cut is not None and (
                name == "message_delta" or (is_content and sent == cut.after_chunks)
            ):
                await cut.break_off(request)
                return response
            if is_content:
                sent += 1
                if delay_s > 0:
                    await asyncio.sleep(delay_s)
            await response.write(b"event: %s\ndata: %s\n\n" % (name.encode(), orjson.dumps(data)))
        await response.write_eof()
    except ConnectionResetError:
        pass  # the client went away mid-stream, as clients do; nothing left to answer
    return response
