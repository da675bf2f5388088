"""Thinking blocks ⇄ `reasoning` items.

A canonical thinking block (Anthropic's, with its signature) is a `reasoning` item whose
`summary` holds the thinking text as one `summary_text` part (Claude's thinking is itself a
summary of its reasoning) and whose `encrypted_content` carries what only the provider reads:
`thinking.<signature>` or, for a redacted block, `redacted_thinking.<data>`. The spec sends
`encrypted_content` only when `include` asks for `reasoning.encrypted_content`; handed back as
an input item with it, the item becomes the thinking block again, ahead of the assistant
message or function call that follows. A reasoning item without it (another provider's, or
one asked for without the include) is stored but not sent: nothing could check it.
"""

from __future__ import annotations

from stellara.schema.chat import RedactedThinkingBlock, ThinkingBlock
from stellara.wire import responses as wire

ENCRYPTED_CONTENT = "reasoning.encrypted_content"
_THINKING = "thinking."
_REDACTED = "redacted_thinking."


def wants_encrypted_content(request: wire.ResponsesRequest) -> bool:
    return ENCRYPTED_CONTENT in (request.include or ())


def encrypted_content(block: ThinkingBlock | RedactedThinkingBlock) -> str:
    """What the reasoning item carries for `block` beside its summary."""
    if isinstance(block, ThinkingBlock):
        return _THINKING + block.signature
    return _REDACTED + block.data


def reasoning_item(
    item_id: str,
    block: ThinkingBlock | RedactedThinkingBlock,
    *,
    with_encrypted_content: bool,
    status: wire.ItemStatus | None = None,
) -> wire.ReasoningItem:
    """The reasoning item for one thinking block."""
    summary = (
        [wire.SummaryText(block.thinking)]
        if isinstance(block, ThinkingBlock) and block.thinking
        else []
    )
    return wire.ReasoningItem(
        item_id,
        summary,
        encrypted_content=encrypted_content(block) if with_encrypted_content else None,
        status=status,
    )


def thinking_block_of(item: wire.ReasoningItem) -> ThinkingBlock | RedactedThinkingBlock | None:
    """The thinking block a reasoning item carries, or None when it carries none we made."""
    carried = item.encrypted_content or ""
    if carried.startswith(_THINKING):
        text = "".join(part.text for part in item.summary)
        return ThinkingBlock(text, carried.removeprefix(_THINKING))
    if carried.startswith(_REDACTED):
        return RedactedThinkingBlock(carried.removeprefix(_REDACTED))
    return None
