"""OpenAI's deprecated function calling (`functions`, `function_call`) on Chat Completions.

Older clients still send a request's `functions` and `function_call` and read the answer's
`message.function_call` with `finish_reason: "function_call"`. The gateway speaks tools only,
so such a request is translated into tools before any provider sees it, whichever provider
that is (OpenAI's newer models refuse the old fields too), and its answer back:

* `functions` → `tools`; `function_call` `"none"` / `"auto"` / `{"name"}` → `tool_choice`;
* in the history, an assistant message's `function_call` → one tool call, and the `function`
  message that answers it → a tool message, with a call id made up to pair them (the old
  form has none);
* in the answer, the first tool call → `message.function_call` (or the stream's
  `delta.function_call`), `finish_reason` `tool_calls` → `function_call`. A provider that still
  calls several functions at once (the old API never did) has the others left in `tool_calls`,
  where the client may see them, rather than lost.
"""

from __future__ import annotations

import msgspec

from stellara.schema.chat import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    ChatRequest,
    Choice,
    ChunkChoice,
    FunctionCallDelta,
    FunctionChoice,
    FunctionMessage,
    Message,
    NamedToolChoice,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    ToolMessage,
)

_CALL_ID = "call_legacy_{}"


def uses_functions(request: ChatRequest) -> bool:
    """Whether `request` asks in the deprecated form (then `to_tools_request` applies)."""
    return request.functions is not None or request.function_call is not None


def to_tools_request(request: ChatRequest) -> ChatRequest:
    """`request` with its functions as tools and its history's function calls as tool calls."""
    tools = [Tool("function", function) for function in request.functions or ()]
    return msgspec.structs.replace(
        request,
        functions=None,
        function_call=None,
        tools=(request.tools or []) + tools or None,
        tool_choice=_tool_choice(request.function_call) or request.tool_choice,
        messages=_tool_messages(request.messages),
    )


def _tool_choice(choice: FunctionChoice | None) -> ToolChoice | None:
    if choice is None or isinstance(choice, str):
        return choice
    return NamedToolChoice("function", choice)


def _tool_messages(messages: list[Message]) -> list[Message]:
    """The history with each function call and its answer paired by a made-up call id: a
    `function` message answers the latest call of that name not yet answered."""
    pending: dict[str, str] = {}
    out: list[Message] = []
    for at, message in enumerate(messages):
        if isinstance(message, AssistantMessage) and message.function_call is not None:
            call_id = pending[message.function_call.name] = _CALL_ID.format(at)
            call = ToolCall(call_id, "function", message.function_call)
            calls = [*(message.tool_calls or ()), call]
            out.append(msgspec.structs.replace(message, function_call=None, tool_calls=calls))
        elif isinstance(message, FunctionMessage):
            call_id = pending.pop(message.name, _CALL_ID.format(at))
            out.append(ToolMessage(message.content or "", call_id))
        else:
            out.append(message)
    return out


def to_function_call_completion(completion: ChatCompletion) -> ChatCompletion:
    """`completion` as the deprecated API answers: its first tool call as `function_call`."""
    return msgspec.structs.replace(
        completion, choices=[_function_call_choice(choice) for choice in completion.choices]
    )


def _function_call_choice(choice: Choice) -> Choice:
    message = choice.message
    if not message.tool_calls:
        return choice
    first, *others = message.tool_calls
    legacy = msgspec.structs.replace(
        message, function_call=first.function, tool_calls=others or None
    )
    return msgspec.structs.replace(
        choice, message=legacy, finish_reason=_finish_reason(choice.finish_reason)
    )


def to_function_call_chunk(chunk: ChatCompletionChunk) -> ChatCompletionChunk:
    """A stream chunk as the deprecated API sends it: the first tool call's deltas (index 0)
    as `delta.function_call`, with no id or type, which the old form lacks."""
    if not any(c.delta.tool_calls or c.finish_reason == "tool_calls" for c in chunk.choices):
        return chunk
    return msgspec.structs.replace(
        chunk, choices=[_function_call_chunk_choice(choice) for choice in chunk.choices]
    )


def _function_call_chunk_choice(choice: ChunkChoice) -> ChunkChoice:
    delta = choice.delta
    first: list[ToolCallDelta] = [c for c in delta.tool_calls or () if c.index == 0]
    if first:
        function = first[0].function or FunctionCallDelta()
        others = [c for c in delta.tool_calls or () if c.index != 0] or None
        delta = msgspec.structs.replace(delta, function_call=function, tool_calls=others)
    return msgspec.structs.replace(
        choice, delta=delta, finish_reason=_finish_reason(choice.finish_reason)
    )


def _finish_reason(reason: str | None) -> str | None:
    return "function_call" if reason == "tool_calls" else reason
