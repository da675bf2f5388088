"""A Responses request's parameters → the canonical request (or a 400 naming the one refused)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from msgspec import Raw, UnsetType

from stellara.errors import InvalidRequestError
from stellara.inbound.bounds import ERROR_CODE, MAX_MESSAGES
from stellara.inbound.responses._messages import REFUSED, turn_messages
from stellara.schema.chat import (
    ChatRequest,
    FunctionDefinition,
    JSONSchemaFormat,
    Message,
    NamedToolChoice,
    ResponseFormat,
    StreamOptions,
    SystemMessage,
    Tool,
    ToolChoice,
    ToolChoiceFunction,
)
from stellara.wire import responses as wire

PARAM_NAMES: Mapping[str, str] = MappingProxyType(
    {
        "max_completion_tokens": "max_output_tokens",
        "response_format": "text.format",
        "reasoning_effort": "reasoning.effort",
        "verbosity": "text.verbosity",
    }
)
"""This dialect's names of the canonical parameters it sets under another name, so a refused
or dropped parameter is named as the client sent it."""


def to_chat_request(
    request: wire.ResponsesRequest, items: list[wire.InputItem], history: list[Message]
) -> ChatRequest:
    """The canonical request for a Responses request.

    Args:
        request: The decoded request.
        items: `input_items(request, ...)`, decoded once for translating and storing.
        history: The canonical messages of the stored conversation `previous_response_id`
            continues (empty without one); `conversation` made them.

    Raises:
        InvalidRequestError: A parameter is refused (see the package docstring), there is no
            input, a `function_call_output` answers no call, a message holds a part its role
            cannot, or the conversation grew past `bounds.MAX_MESSAGES`.
    """
    _refuse_unsupported(request)
    turn = turn_messages(items, history)
    if not turn and not history:
        raise InvalidRequestError("input: at least one input item is required.", param="input")
    messages: list[Message] = []
    if request.instructions:
        messages.append(SystemMessage(content=request.instructions))
    messages.extend(history)
    messages.extend(turn)
    if len(messages) > MAX_MESSAGES:
        raise InvalidRequestError(
            f"input: the conversation holds {len(messages)} messages; at most {MAX_MESSAGES} "
            "are accepted.",
            param="input",
            code=ERROR_CODE,
        )
    tools = [_tool(tool, f"tools[{at}]") for at, tool in enumerate(request.tools or ())]
    choice, tools = _tool_choice(request.tool_choice, tools)
    text = request.text or wire.TextParam()
    return ChatRequest(
        model=request.model,
        messages=messages,
        stream=True if request.stream else None,
        stream_options=StreamOptions(include_usage=True) if request.stream else None,
        temperature=request.temperature,
        top_p=request.top_p,
        max_completion_tokens=request.max_output_tokens,
        user=request.user,
        safety_identifier=request.safety_identifier,
        prompt_cache_key=request.prompt_cache_key,
        service_tier=request.service_tier,
        tools=tools or None,
        tool_choice=choice,
        parallel_tool_calls=request.parallel_tool_calls if tools else None,
        response_format=_response_format(text.format),
        reasoning_effort=request.reasoning.effort if request.reasoning else None,
        verbosity=text.verbosity,
    )


def _is_given(raw: wire.OpaqueJSON) -> bool:
    return not isinstance(raw, UnsetType) and raw != Raw(b"null")


def _refuse_unsupported(request: wire.ResponsesRequest) -> None:
    reasoning = request.reasoning or wire.ReasoningParam()
    obfuscation = request.stream_options and request.stream_options.include_obfuscation
    refusals = (
        ("background", bool(request.background), "background responses"),
        ("conversation", _is_given(request.conversation), "the Conversations API"),
        ("prompt", _is_given(request.prompt), "stored prompt templates"),
        ("context_management", _is_given(request.context_management), "context management"),
        ("moderation", _is_given(request.moderation), "moderation"),
        ("prompt_cache_options", _is_given(request.prompt_cache_options), "cache options"),
        ("prompt_cache_retention", request.prompt_cache_retention is not None, "cache retention"),
        ("truncation", request.truncation == "auto", "truncation 'auto'"),
        ("top_logprobs", bool(request.top_logprobs), "logprobs"),
        ("include", "message.output_text.logprobs" in (request.include or ()), "logprobs"),
        ("reasoning.mode", reasoning.mode is not None, "a reasoning mode"),
        ("reasoning.context", reasoning.context is not None, "a reasoning context mode"),
        ("stream_options.include_obfuscation", bool(obfuscation), "stream obfuscation"),
    )
    for param, is_refused, what in refusals:
        if is_refused:
            raise InvalidRequestError(f"{param}: {what} {REFUSED}.", param=param)


def _tool(tool: wire.ToolParam, path: str) -> Tool:
    if tool.type != "function":
        raise InvalidRequestError(
            f"{path}.type: {tool.type!r} tools are not supported: built-in, MCP and custom "
            "tools run only on OpenAI's own Responses API; use function tools.",
            param=f"{path}.type",
        )
    if not tool.name:
        raise InvalidRequestError(f"{path}.name is required.", param=f"{path}.name")
    for field, is_set in (
        ("defer_loading", bool(tool.defer_loading)),
        ("output_schema", tool.output_schema is not None),
        ("allowed_callers", tool.allowed_callers is not None),
    ):
        if is_set:
            param = f"{path}.{field}"
            raise InvalidRequestError(f"{param} {REFUSED}.", param=param)
    definition = FunctionDefinition(
        tool.name, tool.description, parameters=tool.parameters, strict=tool.strict
    )
    return Tool("function", definition)


def _tool_choice(
    choice: wire.ToolChoice | None, tools: list[Tool]
) -> tuple[ToolChoice | None, list[Tool]]:
    """The canonical tool choice, and the tools to send (`allowed_tools` narrows them).

    OpenAI refuses a tool choice without tools, so none is sent then.
    """
    if choice is None or choice == "none" or choice == "auto":
        return (choice if tools else None), tools
    if choice == "required":
        if not tools:
            raise InvalidRequestError(
                "tool_choice: 'required' needs at least one function tool.", param="tool_choice"
            )
        return choice, tools
    names = {tool.function.name for tool in tools}
    if choice.type == "function":
        if not choice.name or choice.name not in names:
            raise InvalidRequestError(
                f"tool_choice.name: no function tool named {choice.name!r} is in tools.",
                param="tool_choice.name",
            )
        return NamedToolChoice("function", ToolChoiceFunction(choice.name)), tools
    if choice.type == "allowed_tools":
        allowed = _allowed_names(choice.tools or [], names)
        kept = [tool for tool in tools if tool.function.name in allowed]
        return (choice.mode or "auto") if kept else None, kept
    raise InvalidRequestError(
        f"tool_choice.type: {choice.type!r} {REFUSED}; only function tools are.",
        param="tool_choice.type",
    )


def _allowed_names(allowed: list[wire.AllowedTool], names: set[str]) -> set[str]:
    for at, tool in enumerate(allowed):
        if tool.type != "function" or tool.name not in names:
            raise InvalidRequestError(
                f"tool_choice.tools[{at}]: only function tools that are in tools can be allowed.",
                param=f"tool_choice.tools[{at}]",
            )
    return {tool.name for tool in allowed if tool.name}


def _response_format(
    text_format: wire.TextFormat | wire.JSONObjectFormat | wire.JSONSchemaFormat | None,
) -> ResponseFormat | None:
    if isinstance(text_format, wire.JSONObjectFormat):
        return ResponseFormat("json_object")
    if isinstance(text_format, wire.JSONSchemaFormat):
        schema = JSONSchemaFormat(
            text_format.name, text_format.description, text_format.schema, text_format.strict
        )
        return ResponseFormat("json_schema", schema)
    return None  # `text` is what a provider answers by default
