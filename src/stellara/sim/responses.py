"""OpenAI's Responses API (``POST …/responses``), plain and streamed.

A request is read as the chat request it stands for: ``instructions`` a system message first,
message items messages, consecutive ``function_call`` items one assistant message's tool calls,
``function_call_output`` items tool messages, function tools chat tools, ``text.format`` the
response format and ``max_output_tokens`` the token limit. :func:`~stellara.sim.openai_chat.answer`
then answers it, so a conversation gets the same text, the same tool call and the same token
counts here as on ``/chat/completions``. Keys are checked and errors worded as on every OpenAI
route; faults are applied by the simulator before any route, and a stream's cut falls after
``after_chunks`` text or argument deltas.

A stream is the real API's event sequence, numbered by ``sequence_number`` from 0:
``response.created``, ``response.in_progress``, ``response.output_item.added``; for text
``response.content_part.added``, ``response.output_text.delta``…, ``response.output_text.done``,
``response.content_part.done``; for a function call ``response.function_call_arguments.delta``…,
``response.function_call_arguments.done``; then ``response.output_item.done`` and
``response.completed``, or ``response.incomplete`` when ``max_output_tokens`` cut the answer.

The simulator stores nothing, so it answers ``previous_response_id`` and ``item_reference``
items as the real API answers ids it does not know: 400, not found. Tools other than functions
are refused with 400. ``reasoning`` items in ``input`` are skipped: the simulator neither reads
nor makes reasoning.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import Iterator
from typing import Annotated, Any, Literal, TypeVar

import msgspec
import orjson
from aiohttp import web

from stellara.sim.config import SimConfig
from stellara.sim.faults import StreamCut
from stellara.sim.openai import auth_refusal, error_body, error_response
from stellara.sim.openai_chat import (
    ChatFunction,
    ChatJsonSchema,
    ChatMessage,
    ChatRequest,
    ChatResponseFormat,
    ChatTool,
    ChatToolChoice,
    Choice,
    InvalidRequestError,
    ToolCall,
    answer,
    decode,
    prompt_tokens,
)
from stellara.sim.peek import peek_body

_V = TypeVar("_V")
_SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
_Role = Literal["user", "system", "developer", "assistant"]
_Phase = Literal["head", "content", "tail"]
"""Where a stream event stands: before the answer's deltas, one of them, or after them."""


class _Part(msgspec.Struct, kw_only=True):
    type: Literal["input_text", "output_text", "refusal", "input_image", "input_file"]
    text: str | None = None
    refusal: str | None = None
    image_url: str | None = None
    file_id: str | None = None
    filename: str | None = None


_Content = str | list[_Part]
"""A message's content or a function call's output: text, or parts."""


class _Item(msgspec.Struct, kw_only=True):
    # One struct for every item type: which fields an item needs depends on its type, and a
    # message may leave its type out, which a tagged union cannot express.
    type: Literal[
        "message", "function_call", "function_call_output", "reasoning", "item_reference"
    ] = "message"
    id: str | None = None
    role: _Role | None = None
    content: _Content | None = None
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None
    output: _Content | None = None


class _FunctionTool(msgspec.Struct, kw_only=True):
    type: Literal["function"]
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class _NamedFunction(msgspec.Struct, kw_only=True):
    type: Literal["function"]
    name: str


class _Format(msgspec.Struct, kw_only=True, omit_defaults=True):
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = None
    description: str | None = None
    schema: dict[str, Any] | None = None
    strict: bool | None = None


class _Text(msgspec.Struct, kw_only=True):
    format: _Format | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class _Reasoning(msgspec.Struct, kw_only=True):
    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"] | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None


class _ResponsesRequest(msgspec.Struct, kw_only=True):
    model: str
    input: str | list[_Item]
    instructions: str | None = None
    tools: list[_FunctionTool] | None = None
    tool_choice: Literal["none", "auto", "required"] | _NamedFunction | None = None
    parallel_tool_calls: bool | None = None
    text: _Text | None = None
    reasoning: _Reasoning | None = None
    max_output_tokens: Annotated[int, msgspec.Meta(ge=16)] | None = None
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] | None = None
    top_p: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None
    safety_identifier: str | None = None
    store: bool | None = None
    stream: bool | None = None
    previous_response_id: str | None = None
    truncation: Literal["auto", "disabled"] | None = None


class OpenAIResponsesSim:
    """Answers ``POST …/responses`` in the format of OpenAI's Responses API for one simulator.

    Args:
        config: Simulator settings (API key, answer length, per-token delay).
    """

    def __init__(self, config: SimConfig) -> None:
        self._config = config
        self._ids = itertools.count()
        # A random prefix keeps ids unique across simulator restarts, a counter across requests.
        self._id_prefix = os.urandom(4).hex()
        self._decoder = msgspec.json.Decoder(_ResponsesRequest)

    def serves(self, path: str) -> bool:
        """Requests to ``…/responses`` are in the Responses format."""
        return path.endswith("/responses")

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
            cut: When set, the stream breaks off after ``cut.after_chunks`` deltas.
        """
        refusal = auth_refusal(request, self._config.api_key)
        if refusal is not None:
            return refusal
        if request.method != "POST":
            return error_response(404, f"Invalid URL ({request.method} {request.path})")
        try:
            body = decode(self._decoder, raw)
            chat = _chat_request(body)
            (choice,) = answer(chat, default_answer_tokens=self._config.default_answer_tokens)
        except InvalidRequestError as exc:
            return error_response(400, exc.message, param=exc.param)
        draft = _Draft(body, f"{self._id_prefix}{next(self._ids):024x}")
        usage = _usage(prompt_tokens(chat), choice.completion_tokens)
        if body.stream:
            delay_s = self._config.per_token_ms / 1000
            return await _stream(request, _events(draft, choice, usage), cut=cut, delay_s=delay_s)
        if self._config.per_token_ms > 0:
            await asyncio.sleep(self._config.per_token_ms * choice.completion_tokens / 1000)
        status = _status_of(choice)
        done = draft.at(status, [_output_item(choice, draft.number, status)], usage)
        return web.Response(body=orjson.dumps(done), content_type="application/json")


class _Draft:
    """One Response in the making: what is known before the answer is, for every snapshot."""

    __slots__ = ("_fields", "number")

    def __init__(self, request: _ResponsesRequest, number: str) -> None:
        # Output items take the response's number too: one item per response keeps them unique.
        self.number = number
        self._fields = {
            "id": f"resp_{number}",
            "object": "response",
            "created_at": int(time.time()),
            "error": None,
            **_echo(request),
        }

    def at(
        self, status: str, output: list[dict[str, Any]], usage: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """The Response as it stands at ``status``; ``usage`` once the answer is known."""
        # The simulator's only way to end incomplete is max_output_tokens.
        incomplete = {"reason": "max_output_tokens"} if status == "incomplete" else None
        snapshot = {
            **self._fields,
            "status": status,
            "completed_at": int(time.time()) if status == "completed" else None,
            "incomplete_details": incomplete,
            "output": output,
        }
        # The spec's `usage` is an object, not nullable: left out until there is one.
        if usage is not None:
            snapshot["usage"] = usage
        return snapshot


def _chat_request(request: _ResponsesRequest) -> ChatRequest:
    if request.previous_response_id is not None:
        message = f"Previous response with id '{request.previous_response_id}' not found."
        raise InvalidRequestError(message, "previous_response_id")
    messages: list[ChatMessage] = []
    if request.instructions is not None:
        messages.append(ChatMessage(role="system", content=request.instructions))
    if isinstance(request.input, str):
        messages.append(ChatMessage(role="user", content=request.input))
    else:
        for at, item in enumerate(request.input):
            _add_item(messages, item, at)
    if not messages:
        raise InvalidRequestError("'input' holds no message to answer.", "input")
    choice = request.tool_choice
    tool_choice = ChatToolChoice(name=choice.name) if isinstance(choice, _NamedFunction) else choice
    return ChatRequest(
        model=request.model,
        messages=messages,
        max_completion_tokens=request.max_output_tokens,
        tools=[_chat_tool(tool) for tool in request.tools] if request.tools else None,
        tool_choice=tool_choice,
        response_format=_chat_format(request.text),
    )


def _add_item(messages: list[ChatMessage], item: _Item, at: int) -> None:
    if item.type == "message":
        role: _Role = _required(item.role, at, "role")
        content = _chat_content(item.content, at, "content")
        messages.append(ChatMessage(role=role, content=content))
    elif item.type == "function_call":
        _add_call(messages, item, at)
    elif item.type == "function_call_output":
        output = _chat_content(item.output, at, "output")
        call_id = _required(item.call_id, at, "call_id")
        messages.append(ChatMessage(role="tool", tool_call_id=call_id, content=output))
    elif item.type == "item_reference":
        raise InvalidRequestError(f"Item with id '{item.id}' not found.", f"input[{at}].id")


def _add_call(messages: list[ChatMessage], item: _Item, at: int) -> None:
    function = {
        "name": _required(item.name, at, "name"),
        "arguments": _required(item.arguments, at, "arguments"),
    }
    call_id = _required(item.call_id, at, "call_id")
    call: dict[str, Any] = {"id": call_id, "type": "function", "function": function}
    # Consecutive calls are one assistant turn, as a chat client sends them.
    previous = messages[-1] if messages else None
    if previous is not None and previous.role == "assistant" and previous.tool_calls:
        previous.tool_calls.append(call)
    else:
        messages.append(ChatMessage(role="assistant", tool_calls=[call]))


def _required(value: _V | None, at: int, field: str) -> _V:
    if value is None:
        raise _missing(f"input[{at}].{field}")
    return value


def _missing(param: str) -> InvalidRequestError:
    return InvalidRequestError(f"Missing required parameter: '{param}'.", param)


def _chat_content(content: _Content | None, at: int, field: str) -> str | list[dict[str, Any]]:
    # Not _required: mypy cannot solve its type variable for a union.
    if content is None:
        raise _missing(f"input[{at}].{field}")
    if isinstance(content, str):
        return content
    return [_chat_part(part) for part in content]


def _chat_part(part: _Part) -> dict[str, Any]:
    # Chat-shaped, so a conversation hashes and counts as its chat twin does: a text part by its
    # text, any other part as an image's worth of tokens.
    if part.type == "input_image":
        return {"type": "image_url", "image_url": {"url": part.image_url or part.file_id}}
    if part.type == "input_file":
        return {"type": "file", "file": {"file_id": part.file_id, "filename": part.filename}}
    return {"type": "text", "text": part.text or part.refusal or ""}


def _chat_tool(tool: _FunctionTool) -> ChatTool:
    function = ChatFunction(
        name=tool.name, description=tool.description, parameters=tool.parameters or {}
    )
    return ChatTool(function=function)


def _chat_format(text: _Text | None) -> ChatResponseFormat | None:
    form = text.format if text is not None else None
    if form is None or form.type == "text":
        return None
    if form.type == "json_object":
        return ChatResponseFormat(type="json_object")
    if form.name is None:
        raise _missing("text.format.name")
    if form.schema is None:
        raise _missing("text.format.schema")
    json_schema = ChatJsonSchema(name=form.name, schema=form.schema)
    return ChatResponseFormat(type="json_schema", json_schema=json_schema)


def _echo(request: _ResponsesRequest) -> dict[str, Any]:
    """The request's settings as a Response repeats them, with the real API's defaults."""
    reasoning = request.reasoning or _Reasoning()
    text = request.text or _Text()
    choice = request.tool_choice
    echo: dict[str, Any] = {
        "background": False,
        "instructions": request.instructions,
        "max_output_tokens": request.max_output_tokens,
        "max_tool_calls": None,
        "metadata": request.metadata or {},
        "model": request.model,
        "parallel_tool_calls": request.parallel_tool_calls is not False,
        "previous_response_id": None,
        "reasoning": {"effort": reasoning.effort, "summary": reasoning.summary},
        "service_tier": "default",
        "store": request.store is not False,
        "temperature": 1.0 if request.temperature is None else request.temperature,
        "text": {
            "format": msgspec.to_builtins(text.format or _Format(type="text")),
            "verbosity": text.verbosity or "medium",
        },
        "tool_choice": msgspec.to_builtins(choice) if choice is not None else "auto",
        "tools": [_tool_echo(tool) for tool in request.tools or ()],
        "top_logprobs": 0,
        "top_p": 1.0 if request.top_p is None else request.top_p,
        "truncation": request.truncation or "disabled",
    }
    # The spec types these as strings, not nullable: echoed only when sent.
    if request.user is not None:
        echo["user"] = request.user
    if request.safety_identifier is not None:
        echo["safety_identifier"] = request.safety_identifier
    return echo


def _tool_echo(tool: _FunctionTool) -> dict[str, Any]:
    # Function tools are strict unless the request says otherwise, as on the real API.
    return {
        "type": "function",
        "name": tool.name,
        "description": tool.description,
        "parameters": tool.parameters,
        "strict": tool.strict is not False,
    }


def _usage(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_tokens,
    }


def _status_of(choice: Choice) -> Literal["completed", "incomplete"]:
    return "incomplete" if choice.finish_reason == "length" else "completed"


def _output_item(choice: Choice, number: str, status: str) -> dict[str, Any]:
    call = choice.tool_call
    if call is not None:
        return {
            "id": f"fc_{number}",
            "type": "function_call",
            "status": status,
            "call_id": call.id,
            "name": call.name,
            "arguments": call.arguments,
        }
    return {
        "id": f"msg_{number}",
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": [_text_part("".join(choice.pieces))],
    }


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _events(
    draft: _Draft, choice: Choice, usage: dict[str, Any]
) -> Iterator[tuple[_Phase, dict[str, Any]]]:
    """The stream's events in order, each with its phase, not yet numbered."""
    started = draft.at("in_progress", [])
    yield "head", {"type": "response.created", "response": started}
    yield "head", {"type": "response.in_progress", "response": started}
    status = _status_of(choice)
    item = _output_item(choice, draft.number, status)
    # The item as first announced: no text or arguments yet.
    opened = {**item, "status": "in_progress"}
    if choice.tool_call is not None:
        opened["arguments"] = ""
    else:
        opened["content"] = []
    yield "head", {"type": "response.output_item.added", "output_index": 0, "item": opened}
    if choice.tool_call is not None:
        yield from _argument_events(item["id"], choice.tool_call)
    else:
        yield from _text_events(item["id"], choice.pieces, item["content"][0])
    yield "tail", {"type": "response.output_item.done", "output_index": 0, "item": item}
    # response.completed or response.incomplete, with the Response as it ended.
    yield "tail", {"type": f"response.{status}", "response": draft.at(status, [item], usage)}


def _text_events(
    item_id: str, pieces: tuple[str, ...], part: dict[str, Any]
) -> Iterator[tuple[_Phase, dict[str, Any]]]:
    where = {"item_id": item_id, "output_index": 0, "content_index": 0}
    yield "head", {"type": "response.content_part.added", **where, "part": _text_part("")}
    for piece in pieces:
        delta = {"type": "response.output_text.delta", **where, "delta": piece, "logprobs": []}
        yield "content", delta
    done = {"type": "response.output_text.done", **where, "text": part["text"], "logprobs": []}
    yield "tail", done
    yield "tail", {"type": "response.content_part.done", **where, "part": part}


def _argument_events(item_id: str, call: ToolCall) -> Iterator[tuple[_Phase, dict[str, Any]]]:
    where = {"item_id": item_id, "output_index": 0}
    for fragment in call.fragments:
        delta = {"type": "response.function_call_arguments.delta", **where, "delta": fragment}
        yield "content", delta
    done = {"type": "response.function_call_arguments.done", **where, "name": call.name}
    yield "tail", {**done, "arguments": call.arguments}


async def _stream(
    request: web.Request,
    events: Iterator[tuple[_Phase, dict[str, Any]]],
    *,
    cut: StreamCut | None,
    delay_s: float,
) -> web.StreamResponse:
    response = web.StreamResponse(headers=_SSE_HEADERS)
    try:
        await response.prepare(request)
        await _write_events(request, response, events, cut, delay_s)
    except ConnectionResetError:
        pass  # the client went away mid-stream, as clients do; nothing left to answer
    return response


async def _write_events(
    request: web.Request,
    response: web.StreamResponse,
    events: Iterator[tuple[_Phase, dict[str, Any]]],
    cut: StreamCut | None,
    delay_s: float,
) -> None:
    sent = 0
    for number, (phase, event) in enumerate(events):
        # As on the chat route: the cut falls after `after_chunks` deltas, and always before
        # anything that would tell the client the answer is complete.
        if cut is not None and phase != "head" and (phase == "tail" or sent == cut.after_chunks):
            await cut.break_off(request)
            return
        if phase == "content":
            sent += 1
            if delay_s > 0:
                await asyncio.sleep(delay_s)
        event["sequence_number"] = number
        kind = event["type"].encode()
        await response.write(b"event: " + kind + b"\ndata: " + orjson.dumps(event) + b"\n\n")
    await response.write_eof()
