"""Canonical answers → the response object (whole, and the pieces the stream writer shares)."""

from __future__ import annotations

from typing import get_args

import msgspec
from msgspec import UNSET, UnsetType

from stellara.inbound.responses._items import output_id
from stellara.schema.chat import ChatCompletion, Usage
from stellara.wire import responses as wire

_SERVICE_TIERS = frozenset(get_args(wire.ServiceTier))


def to_response(
    completion: ChatCompletion,
    request: wire.ResponsesRequest,
    *,
    response_id: str,
    created_at: int,
    store: bool,
    completed_at: int | None = None,
) -> wire.Response:
    """The response object for a canonical completion.

    Args:
        completion: The gateway's answer; only its first choice is used (the route asks for one).
        request: The request, whose parameters the response echoes (`model` as the client
            named it).
        response_id: `resp_<32 hex>`; output item ids are derived from it.
        created_at: When the request arrived, in Unix seconds.
        store: Whether the response is stored: the request's `store` (default true), unless
            the gateway's configuration stores nothing.
        completed_at: When the answer completed, in Unix seconds; reported only when the
            response is `completed`.
    """
    output: list[wire.OutputItem] = []
    finish_reason: str | None = None
    if completion.choices:
        choice = completion.choices[0]
        finish_reason = choice.finish_reason
        status = item_status(finish_reason)
        message = choice.message
        parts: list[wire.OutputContent] = []
        if message.content:
            parts.append(wire.OutputText(message.content))
        if message.refusal:
            parts.append(wire.Refusal(message.refusal))
        if parts:
            message_id = output_id("msg", response_id, 0)
            output.append(wire.OutputMessage(message_id, status, "assistant", parts))
        for call in message.tool_calls or ():
            call_item_id = output_id("fc", response_id, len(output))
            function = call.function
            output.append(
                wire.FunctionCall(
                    call.id, function.name, function.arguments, id=call_item_id, status=status
                )
            )
    base = base_response(request, response_id=response_id, created_at=created_at, store=store)
    return ended(
        base, output, finish_reason, completion.usage, completion.service_tier, completed_at
    )


def base_response(
    request: wire.ResponsesRequest, *, response_id: str, created_at: int, store: bool
) -> wire.Response:
    """The response in progress: no output yet, the request's parameters echoed."""
    text = request.text or wire.TextParam()
    return wire.Response(
        id=response_id,
        object="response",
        created_at=created_at,
        status="in_progress",
        background=False,
        completed_at=None,
        error=None,
        incomplete_details=None,
        instructions=request.instructions,
        max_output_tokens=request.max_output_tokens,
        max_tool_calls=request.max_tool_calls,
        model=request.model,
        output=[],
        parallel_tool_calls=request.parallel_tool_calls is not False,
        previous_response_id=request.previous_response_id,
        prompt_cache_key=request.prompt_cache_key,
        reasoning=request.reasoning,
        safety_identifier=request.safety_identifier,
        service_tier=request.service_tier,
        store=store,
        temperature=request.temperature,
        text=wire.TextParam(text.format or wire.TextFormat(), text.verbosity),
        tool_choice=request.tool_choice or "auto",
        tools=[
            wire.FunctionTool(tool.name or "", tool.parameters, tool.strict, tool.description)
            for tool in request.tools or ()
        ],
        top_p=request.top_p,
        truncation=request.truncation or "disabled",
        user=UNSET if request.user is None else request.user,
        metadata=request.metadata or {},
    )


def ended(
    base: wire.Response,
    output: list[wire.OutputItem],
    finish_reason: str | None,
    usage: Usage | None,
    service_tier: str | None,
    completed_at: int | None,
) -> wire.Response:
    """`base` with its output, usage and the status the finish reason gives."""
    status: wire.ResponseStatus = "completed"
    details = None
    if finish_reason == "length":
        status, details = "incomplete", wire.IncompleteDetails("max_output_tokens")
    elif finish_reason == "content_filter":
        status, details = "incomplete", wire.IncompleteDetails("content_filter")
    return msgspec.structs.replace(
        base,
        status=status,
        completed_at=completed_at if status == "completed" else None,
        incomplete_details=details,
        output=output,
        usage=usage_of(usage),
        service_tier=service_tier if service_tier in _SERVICE_TIERS else None,
    )


def item_status(finish_reason: str | None) -> wire.ItemStatus:
    """An output item's status once its answer ended with `finish_reason`."""
    return "incomplete" if finish_reason in ("length", "content_filter") else "completed"


def usage_of(usage: Usage | None) -> wire.Usage | UnsetType:
    """The Responses usage for a canonical one; unset when the provider reported none."""
    if usage is None:
        return UNSET
    prompt_details = usage.prompt_tokens_details
    cached = (prompt_details.cached_tokens or 0) if prompt_details else 0
    written = (prompt_details.cache_write_tokens or 0) if prompt_details else 0
    completion_details = usage.completion_tokens_details
    reasoning = (completion_details.reasoning_tokens or 0) if completion_details else 0
    return wire.Usage(
        input_tokens=usage.prompt_tokens,
        input_tokens_details=wire.InputTokensDetails(
            cached_tokens=cached, cache_write_tokens=written
        ),
        output_tokens=usage.completion_tokens,
        output_tokens_details=wire.OutputTokensDetails(reasoning_tokens=reasoning),
        total_tokens=usage.total_tokens or usage.prompt_tokens + usage.completion_tokens,
    )
