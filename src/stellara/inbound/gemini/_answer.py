"""A canonical completion → a Gemini `GenerateContentResponse`."""

from __future__ import annotations

from stellara.inbound.anthropic import tool_input
from stellara.schema.chat import ChatCompletion, ResponseMessage, ToolCall, Usage
from stellara.wire.google import (
    Candidate,
    Content,
    FunctionCall,
    GenerateContentResponse,
    Part,
    UsageMetadata,
)

_FINISH_REASONS = {
    "stop": "STOP",
    "tool_calls": "STOP",  # Gemini ends a function call with STOP
    "function_call": "STOP",
    "length": "MAX_TOKENS",
    "content_filter": "SAFETY",
}


def to_generate_response(completion: ChatCompletion, *, model: str) -> GenerateContentResponse:
    """The Gemini answer for a canonical completion.

    Args:
        completion: The gateway's answer, one candidate per choice.
        model: The public model name the client asked for, reported as `modelVersion`.
    """
    candidates = [
        Candidate(
            content=Content(parts=message_parts(choice.message), role="model"),
            finish_reason=finish_reason(choice.finish_reason, refused=bool(choice.message.refusal)),
            index=choice.index,
        )
        for choice in completion.choices
    ]
    return GenerateContentResponse(
        candidates=candidates,
        usage_metadata=usage_metadata(completion.usage),
        model_version=model,
        response_id=response_id(completion.id),
    )


def message_parts(message: ResponseMessage) -> list[Part]:
    """A text part (the answer, or the refusal) and a functionCall part per tool call."""
    parts = [Part(text=text) for text in (message.content, message.refusal) if text]
    parts.extend(function_call_part(call) for call in message.tool_calls or [])
    return parts


def function_call_part(call: ToolCall) -> Part:
    """The call's id travels with it, so the client's functionResponse can name it. Arguments
    a model wrote that are not a JSON object are kept under `_raw_arguments`, as the
    Anthropic dialect keeps them, rather than lost (a tool is never run with none)."""
    args = tool_input(call.function.arguments)
    return Part(function_call=FunctionCall(name=call.function.name, args=args, id=call.id or None))


def finish_reason(reason: str | None, *, refused: bool = False) -> str | None:
    """Gemini's `finishReason` for a canonical one (None: not finished)."""
    if refused:
        return "SAFETY"
    if reason is None:
        return None
    return _FINISH_REASONS.get(reason, "OTHER")


def usage_metadata(usage: Usage | None) -> UsageMetadata | None:
    """Gemini counts thinking apart from the answer; the canonical form counts it in
    `completion_tokens` (and names it in `reasoning_tokens`)."""
    if usage is None:
        return None
    details = usage.completion_tokens_details
    thoughts = (details.reasoning_tokens or 0) if details else 0
    cached = usage.prompt_tokens_details.cached_tokens if usage.prompt_tokens_details else None
    return UsageMetadata(
        prompt_token_count=usage.prompt_tokens,
        candidates_token_count=max(0, usage.completion_tokens - thoughts),
        total_token_count=usage.total_tokens,
        cached_content_token_count=cached or 0,
        thoughts_token_count=thoughts,
    )


def response_id(completion_id: str) -> str:
    """Gemini's `responseId` for a canonical completion id (the `chatcmpl-` prefix dropped)."""
    return completion_id.removeprefix("chatcmpl-")
