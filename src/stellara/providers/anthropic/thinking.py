"""Extended thinking for the Messages API: `thinking`, and OpenAI's `reasoning_effort` as a budget.

What holds:

* The canonical `thinking` (from `/v1/messages` clients, or OpenAI-shaped ones) is sent as it
  came; Anthropic checks the budget (at least 1024, below `max_tokens`).
* `reasoning_effort` without `thinking` becomes `thinking: {"type": "enabled", "budget_tokens":
  N}` with N from `EFFORT_BUDGETS` (`none` sends no thinking). Anthropic counts thinking within
  `max_tokens`, so a request without `max_tokens` gets the default *plus* the budget, keeping
  the room for the answer the default gave; with `max_tokens`, the budget is cut to fit below
  it, and a request whose `max_tokens` leaves less than Anthropic's minimum budget is refused.
* Anthropic refuses thinking together with a forced tool (`tool_choice` `any` or `tool`), which
  is also how a JSON `response_format` is enforced (`tools`): such a request is refused with a
  400 naming the conflict before any call, never sent to fail or silently weakened.
* Thinking blocks in an assistant message's history (`thinking_blocks`) go first in its turn,
  as Anthropic requires of the turn that holds a tool call when thinking is on.
"""

from __future__ import annotations

from stellara.errors import InvalidRequestError
from stellara.schema.chat import (
    AssistantMessage,
    ChatRequest,
    RedactedThinkingBlock,
    ThinkingBlock,
    ThinkingConfig,
)
from stellara.wire import anthropic as wire

MIN_BUDGET_TOKENS = 1024
"""Anthropic's smallest thinking budget."""

EFFORT_BUDGETS = {
    "minimal": 1024,
    "low": 2048,
    "medium": 8192,
    "high": 16384,
    "xhigh": 32768,
}
"""`reasoning_effort` → thinking `budget_tokens` (`none` turns thinking off)."""


def thinking_of(
    request: ChatRequest, *, max_tokens: int | None, default_max_tokens: int
) -> tuple[wire.ThinkingParam | None, int]:
    """The request's `thinking` and the `max_tokens` to send with it.

    Args:
        request: The canonical request.
        max_tokens: The client's `max_tokens` (or `max_completion_tokens`), if any.
        default_max_tokens: The provider's default `max_tokens`.

    Raises:
        InvalidRequestError: An unknown `reasoning_effort`, or a `max_tokens` too small for it.
    """
    if request.thinking is not None:
        return _param(request.thinking), max_tokens or default_max_tokens
    effort = request.reasoning_effort
    if effort is None or effort == "none":
        return None, max_tokens or default_max_tokens
    budget = EFFORT_BUDGETS.get(effort)
    if budget is None:
        raise InvalidRequestError(
            f"reasoning_effort {effort!r} is not one of none, "
            + ", ".join(EFFORT_BUDGETS)
            + " for this model's provider",
            param="reasoning_effort",
        )
    if max_tokens is None:
        return wire.ThinkingParam("enabled", budget), default_max_tokens + budget
    budget = min(budget, max_tokens - 1)
    if budget < MIN_BUDGET_TOKENS:
        raise InvalidRequestError(
            f"reasoning_effort needs max_tokens above {MIN_BUDGET_TOKENS} on this model's "
            "provider, which counts thinking within max_tokens",
            param="reasoning_effort",
        )
    return wire.ThinkingParam("enabled", budget), max_tokens


def check_forced_tool(
    request: ChatRequest,
    thinking: wire.ThinkingParam | None,
    tool_choice: wire.ToolChoiceParam | None,
) -> None:
    """Refuse thinking with a forced tool, which Anthropic refuses (see the module notes).

    Args:
        request: The canonical request.
        thinking: The request's thinking, as sent.
        tool_choice: The request's tool choice, as sent.
    """
    if thinking is None or thinking.type == "disabled":
        return
    if tool_choice is None or tool_choice.type not in ("any", "tool"):
        return
    asked = "thinking" if request.thinking is not None else "reasoning_effort"
    format_ = request.response_format
    if format_ is not None and format_.type != "text":
        raise InvalidRequestError(
            f"{asked} cannot be combined with a JSON response_format on this model's provider, "
            "which enforces the format with a forced tool and refuses thinking beside one",
            param="response_format",
        )
    raise InvalidRequestError(
        f"{asked} cannot be combined with a tool_choice that forces a tool call on this "
        "model's provider; use tool_choice auto",
        param="tool_choice",
    )


def thinking_blocks_of(message: AssistantMessage) -> list[wire.RequestBlock]:
    """The message's thinking blocks, to open its turn."""
    return [
        wire.ThinkingBlock(block.thinking, block.signature)
        if isinstance(block, ThinkingBlock)
        else wire.RedactedThinkingBlock(block.data)
        for block in message.thinking_blocks or ()
    ]


def canonical_thinking_blocks(
    blocks: list[wire.ThinkingBlock | wire.RedactedThinkingBlock],
) -> list[ThinkingBlock | RedactedThinkingBlock]:
    """The canonical form of an answer's thinking blocks."""
    return [
        ThinkingBlock(block.thinking, block.signature)
        if isinstance(block, wire.ThinkingBlock)
        else RedactedThinkingBlock(block.data)
        for block in blocks
    ]


def _param(thinking: ThinkingConfig) -> wire.ThinkingParam:
    return wire.ThinkingParam(thinking.type, thinking.budget_tokens)
