"""The OpenAI chat request as the simulator reads it, and the answer it gives.

Shared by the Chat Completions and Responses routes: the Responses route reads its request as the
chat request it stands for, so one conversation gets the same answer, and the same token counts,
on both. Requests are decoded into typed structs; a decoding error is an
:class:`InvalidRequestError` naming the offending ``param``, like the real API's 400s.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

import msgspec
import orjson

from stellara.sim import text

_T = TypeVar("_T")
_ERROR_PATH = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")
_MISSING_FIELD = re.compile(r"missing required field `(?P<field>[^`]+)`")


class ChatMessage(msgspec.Struct, kw_only=True):
    """One message of ``messages``; content parts stay dicts, read only for their ``text``."""

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None


class ChatFunction(msgspec.Struct, kw_only=True):
    """A function tool's declaration: its ``parameters`` schema shapes the call's arguments."""

    name: str
    description: str | None = None
    parameters: dict[str, Any] = msgspec.field(default_factory=dict)


class ChatTool(msgspec.Struct, kw_only=True):
    """One entry of ``tools``; only function tools carry a ``function``."""

    type: str = "function"
    function: ChatFunction | None = None


class _Named(msgspec.Struct):
    name: str


class ChatToolChoice(msgspec.Struct, kw_only=True):
    """A ``tool_choice`` naming a function, as ``function.name`` or (Responses-style) ``name``."""

    type: str = "function"
    function: _Named | None = None
    name: str | None = None


class ChatJsonSchema(msgspec.Struct, kw_only=True):
    """The schema a ``json_schema`` answer follows."""

    name: str = "response"
    schema: dict[str, Any] | None = None


class ChatResponseFormat(msgspec.Struct, kw_only=True):
    """``response_format``: plain text, any JSON object, or JSON following a schema."""

    type: Literal["text", "json_object", "json_schema"]
    json_schema: ChatJsonSchema | None = None


class _StreamOptions(msgspec.Struct, kw_only=True):
    include_usage: bool | None = None


class ChatRequest(msgspec.Struct, kw_only=True):
    """The fields of a chat completion request that shape the simulator's answer."""

    model: str
    messages: Annotated[list[ChatMessage], msgspec.Meta(min_length=1)]
    n: Annotated[int, msgspec.Meta(ge=1, le=128)] | None = None
    max_tokens: Annotated[int, msgspec.Meta(ge=1)] | None = None
    max_completion_tokens: Annotated[int, msgspec.Meta(ge=1)] | None = None
    stop: str | Annotated[list[str], msgspec.Meta(max_length=4)] | None = None
    stream: bool | None = None
    stream_options: _StreamOptions | None = None
    tools: list[ChatTool] | None = None
    tool_choice: str | ChatToolChoice | None = None
    response_format: ChatResponseFormat | None = None


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A function call the answer makes instead of text; ``arguments`` is JSON text."""

    id: str
    name: str
    arguments: str

    @property
    def fragments(self) -> list[str]:
        # Streamed four characters at a time: one token each, by text.count_tokens' measure.
        return [self.arguments[at : at + 4] for at in range(0, len(self.arguments), 4)]


@dataclass(frozen=True, slots=True)
class Choice:
    """One answer: text ``pieces`` (one per token) or a ``tool_call``, and its finish reason."""

    index: int
    pieces: tuple[str, ...]
    finish_reason: str
    tool_call: ToolCall | None = None

    @property
    def completion_tokens(self) -> int:
        if self.tool_call is not None:
            return text.count_tokens(self.tool_call.arguments)
        return len(self.pieces)


class InvalidRequestError(Exception):
    """The request is invalid; the route answers 400 with ``message`` and ``param``."""

    def __init__(self, message: str, param: str | None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


def answer(chat: ChatRequest, *, default_answer_tokens: int) -> list[Choice]:
    """Answer a chat request: one :class:`Choice` per ``n``, each text or one tool call.

    The answer depends on the messages only, so the same conversation gets the same answer on
    every route and every run.

    Raises:
        InvalidRequestError: ``tool_choice`` names a function that ``tools`` does not hold.
    """
    prompt = msgspec.json.encode(chat.messages)
    last = chat.messages[-1]
    user_text = next((_text_of(m.content) for m in reversed(chat.messages) if m.role == "user"), "")
    function = _chosen_function(chat)
    choices = []
    for index in range(chat.n or 1):
        seed = text.seed_of(prompt, index.to_bytes(2, "little"))
        if function is not None:
            choices.append(_tool_choice(index, seed, function, user_text))
            continue
        n_tokens = default_answer_tokens
        if last.role == "tool":
            lead = f"Tool result: {_text_of(last.content)}"
            n_tokens = max(n_tokens, len(text.split_pieces(lead)))
        else:
            lead = text.echo_of(user_text)
        pieces = text.prose_pieces(seed, lead, n_tokens)
        if chat.response_format is not None and chat.response_format.type != "text":
            json_text = _json_answer(chat.response_format, "".join(pieces), user_text)
            pieces = text.split_pieces(json_text)
        stop = [chat.stop] if isinstance(chat.stop, str) else chat.stop or []
        max_tokens = chat.max_completion_tokens or chat.max_tokens
        completion = text.finish(pieces, max_tokens=max_tokens, stop=stop)
        choices.append(Choice(index, completion.pieces, completion.finish_reason))
    return choices


def prompt_tokens(chat: ChatRequest) -> int:
    """Count the request's prompt tokens by :mod:`~stellara.sim.text`'s recipe."""
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


def decode(decoder: msgspec.json.Decoder[_T], raw: bytes) -> _T:
    """Decode a request body, turning any failure into an :class:`InvalidRequestError`."""
    try:
        return decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise InvalidRequestError(str(exc), _param_of(str(exc))) from exc
    except msgspec.DecodeError as exc:
        message = "We could not parse the JSON body of your request. The body must be valid JSON."
        raise InvalidRequestError(message, None) from exc


def _param_of(message: str) -> str | None:
    found = _ERROR_PATH.search(message)
    path = found.group("path") if found else ""
    missing = _MISSING_FIELD.search(message)
    if missing:
        path = f"{path}.{missing.group('field')}" if path else missing.group("field")
    return path or None


def _chosen_function(chat: ChatRequest) -> ChatFunction | None:
    if not chat.tools or chat.tool_choice == "none" or chat.messages[-1].role != "user":
        return None
    functions = [tool.function for tool in chat.tools if tool.function is not None]
    if not functions:
        return None
    choice = chat.tool_choice
    wanted = None
    if isinstance(choice, ChatToolChoice):
        wanted = choice.function.name if choice.function is not None else choice.name
    if wanted is None:
        return functions[0]
    for function in functions:
        if function.name == wanted:
            return function
    message = f"Invalid value for 'tool_choice': no function named '{wanted}' in 'tools'."
    raise InvalidRequestError(message, "tool_choice")


def _tool_choice(index: int, seed: bytes, function: ChatFunction, user_text: str) -> Choice:
    arguments = text.sample_object(function.parameters, text.words_of(user_text))
    call_id = "call_" + text.seed_of(seed, b"call").hex()[:24]
    call = ToolCall(call_id, function.name, orjson.dumps(arguments).decode())
    return Choice(index, (), "tool_calls", call)


def _json_answer(response_format: ChatResponseFormat, prose: str, user_text: str) -> str:
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
