"""The exact-cache key: a canonical hash of everything that changes a chat answer.

Two requests that must get the same answer get the same key, whatever the JSON key order or
whether content is a string or one text part; any field that changes the answer changes it.
Fields that only change the delivery or the bookkeeping (`stream`, `stream_options`, `user`,
`metadata`, `store`, `service_tier`, prompt-cache hints) are left out, so a stored answer also
serves the streamed form of the same request.
"""

from __future__ import annotations

import hashlib

import msgspec

from stellara.schema.chat import (
    ChatRequest,
    DeveloperMessage,
    Message,
    SystemMessage,
    TextPart,
    ToolMessage,
    UserMessage,
)

_encoder = msgspec.json.Encoder(order="sorted")


def cache_key(scope: str, request: ChatRequest, partition: str = "") -> str:
    """The key of `request` for the tenant `scope` (a user, a team, or "global"); a
    `partition` (an experiment's variant) keeps answers apart that the request alone would not
    tell apart, as variants served by other targets."""
    answer_shaping = msgspec.structs.replace(
        request,
        messages=[_canonical(message) for message in request.messages],
        stream=None,
        stream_options=None,
        user=None,
        metadata=None,
        store=None,
        service_tier=None,
        prompt_cache_key=None,
        safety_identifier=None,
    )
    digest = hashlib.blake2b(_encoder.encode(answer_shaping), digest_size=20)
    digest.update(b"\x00" + scope.encode())
    if partition:
        digest.update(b"\x00" + partition.encode())
    return digest.hexdigest()


def semantic_namespace(tenant: str, model: str, context: str) -> str:
    """The namespace of a semantic lookup: what must match exactly for a cached answer to apply.

    Args:
        tenant: the tenant (or API key id) whose entries may be served.
        model: the requested model.
        context: a canonical rendering of everything but the last user turn (system prompt,
            earlier turns, sampling parameters); the caller decides what belongs in it.

    Returns:
        ``"<tenant>:<model>:<16 hex digits>"``; readable in logs, fixed length for the context.
    """
    digest = hashlib.blake2b(context.encode(), digest_size=8).hexdigest()
    return f"{tenant}:{model}:{digest}"


def _canonical(message: Message) -> Message:
    """One text part is the same prompt as its string. (Several parts are left alone: how a
    provider joins them is its own business.)"""
    if isinstance(message, SystemMessage | DeveloperMessage | UserMessage | ToolMessage):
        content = message.content
        if isinstance(content, list) and len(content) == 1 and isinstance(content[0], TextPart):
            return msgspec.structs.replace(message, content=content[0].text)
    return message
