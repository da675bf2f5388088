"""Tools and tool choice for the Messages API, with `response_format` as a forced *answer tool*.

Anthropic's own JSON output (`output_config.format`) exists only on recent models and the
others refuse it, but every model honours a forced tool. So a JSON `response_format` becomes a
tool whose `input_schema` is the requested schema (a free object for `json_object`), and the
model is made to call it: its `input` is the answer, which `chat` and `stream` turn back into
the message's text content, finish reason "stop". What holds:

* **Name**: `stellara_answer_<schema name>` when that is a legal tool name
  (`^[a-zA-Z0-9_-]{1,64}$`), else `stellara_answer`. A client tool of the same name is refused
  with a 400 rather than mistaken for the answer. The description says the tool's input is the
  answer, followed by the schema's own description when there is one.
* **Client tools beside it**, by the client's `tool_choice`:
  - none or `auto`: every tool is offered with `tool_choice: any`; the model either calls
    client tools, which stay tool calls, or answers through the answer tool.
  - `none`: the answer tool is forced; the client's tools are still listed, never called.
  - `required`, or a named tool: the answer is a tool call, so there is no content to shape;
    the answer tool is not offered and the client's choice is sent as it is.
  Without client tools the answer tool is always forced, one call only.
* **`strict`**: `strict: true` on a tool makes Anthropic guarantee that the input matches the
  schema, but only models with structured outputs (Claude 4.5 and later) take the field; the
  others refuse the request ("does not support strict tools"). The gateway cannot tell a
  model's generation, so `strict: true` (on the answer tool for a strict `json_schema`, and on
  client tools marked strict) is sent only when the provider is configured with
  `strict_tools: true`. Without it the answer is still one JSON object, the forced tool's
  input, which the model fills from the schema as it fills any tool's, without constrained
  decoding.
* **Extended thinking**: Anthropic refuses a forced tool (`tool` or `any`) while thinking is
  on. The canonical request carries no thinking today (`reasoning_effort` is not translated
  and `/v1/messages` drops `thinking`), so the two never meet; a translation of thinking must
  refuse it with a 400 next to a JSON `response_format`, as an unforced answer tool would make
  the format a wish again.
"""

from __future__ import annotations

import re
from typing import Any

from stellara.errors import InvalidRequestError
from stellara.schema.chat import ChatRequest, NamedToolChoice, ResponseFormat, Tool, ToolChoice
from stellara.wire import anthropic as wire

ANSWER_TOOL_PREFIX = "stellara_answer"
"""The answer tool's name, or the start of it (see the module notes)."""

_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_EMPTY_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}
_FREE_OBJECT: dict[str, Any] = {"type": "object"}
_ANSWER_DESCRIPTION = (
    "Give your final answer to the user by calling this tool: its input is the whole answer."
)


def answer_tool_name(response_format: ResponseFormat | None) -> str | None:
    """The answer tool's name for `response_format`, or None when the answer is plain text."""
    if response_format is None or response_format.type == "text":
        return None
    json_schema = response_format.json_schema
    if response_format.type == "json_schema" and json_schema is not None:
        name = f"{ANSWER_TOOL_PREFIX}_{json_schema.name}"
        if _TOOL_NAME.match(name):
            return name
    return ANSWER_TOOL_PREFIX


def tools_of(
    request: ChatRequest, *, strict_tools: bool
) -> tuple[list[wire.ToolParam] | None, wire.ToolChoiceParam | None]:
    """The request's `tools` and `tool_choice`, the answer tool included (see the module notes).

    Args:
        request: The canonical request.
        strict_tools: Whether the provider's models take `strict` on tools.

    Raises:
        InvalidRequestError: A client tool has the answer tool's name, or the JSON schema's
            root is not an object.
    """
    answer = answer_tool_name(request.response_format)
    tools = [
        _client_tool(tool, f"tools[{at}]", answer, strict_tools=strict_tools)
        for at, tool in enumerate(request.tools or ())
    ]
    choice, parallel = request.tool_choice, request.parallel_tool_calls
    format_ = request.response_format
    is_call_required = choice == "required" or isinstance(choice, NamedToolChoice)
    if answer is None or format_ is None or (tools and is_call_required):
        # Anthropic refuses a tool_choice without tools.
        return (tools, _tool_choice(choice, parallel)) if tools else (None, None)
    tools.append(_answer_tool(answer, format_, strict_tools=strict_tools))
    if len(tools) > 1 and choice != "none":
        return tools, wire.ToolChoiceParam("any", disable_parallel_tool_use=_no_parallel(parallel))
    return tools, wire.ToolChoiceParam("tool", name=answer, disable_parallel_tool_use=True)


def _client_tool(
    tool: Tool, param: str, answer: str | None, *, strict_tools: bool
) -> wire.ToolParam:
    function = tool.function
    if function.name == answer:
        raise InvalidRequestError(
            f"the tool name {answer!r} is reserved for the structured answer when "
            "response_format asks for JSON from this model's provider",
            param=f"{param}.function.name",
        )
    return wire.ToolParam(
        name=function.name,
        input_schema=function.parameters or _EMPTY_SCHEMA,
        description=function.description,
        strict=True if strict_tools and function.strict else None,
    )


def _answer_tool(
    name: str, response_format: ResponseFormat, *, strict_tools: bool
) -> wire.ToolParam:
    json_schema = response_format.json_schema
    if response_format.type != "json_schema" or json_schema is None:
        return wire.ToolParam(name=name, input_schema=_FREE_OBJECT, description=_ANSWER_DESCRIPTION)
    schema = json_schema.schema or _FREE_OBJECT
    if schema.get("type") != "object":
        raise InvalidRequestError(
            "this model's provider takes a JSON schema whose root is an object "
            '({"type": "object", …})',
            param="response_format.json_schema.schema",
        )
    description = _ANSWER_DESCRIPTION
    if json_schema.description:
        description = f"{description}\n\n{json_schema.description}"
    strict = True if strict_tools and json_schema.strict else None
    return wire.ToolParam(name=name, input_schema=schema, description=description, strict=strict)


def _no_parallel(parallel: bool | None) -> bool | None:
    return True if parallel is False else None


def _tool_choice(choice: ToolChoice | None, parallel: bool | None) -> wire.ToolChoiceParam | None:
    disable_parallel = _no_parallel(parallel)
    if isinstance(choice, NamedToolChoice):
        name = choice.function.name
        return wire.ToolChoiceParam("tool", name=name, disable_parallel_tool_use=disable_parallel)
    if choice == "none":
        return wire.ToolChoiceParam("none")  # takes no parallel flag: no tool is used at all
    if choice == "required":
        return wire.ToolChoiceParam("any", disable_parallel_tool_use=disable_parallel)
    if choice == "auto" or disable_parallel:
        return wire.ToolChoiceParam("auto", disable_parallel_tool_use=disable_parallel)
    return None
