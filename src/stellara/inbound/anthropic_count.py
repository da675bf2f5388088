"""Anthropic token counting (`POST /v1/messages/count_tokens`) ⇄ the canonical request.

A count's prompt translates exactly as a message's (`inbound.anthropic.to_chat_request`), so
whichever provider counts it, or the gateway's own tokenizer, measures what the same
`/v1/messages` request would send.
"""

from __future__ import annotations

import msgspec
from msgspec import UnsetType

from stellara.errors import InvalidRequestError
from stellara.inbound.anthropic import to_chat_request
from stellara.schema.chat import ChatRequest
from stellara.wire.anthropic_count import GENERATION_FIELDS, CountTokensRequest


def to_count_request(request: CountTokensRequest) -> ChatRequest:
    """The canonical request whose prompt `request` asks to count.

    Raises:
        InvalidRequestError: A generation setting was sent (Anthropic's count refuses them
            too), or the prompt cannot be translated.
    """
    for name in GENERATION_FIELDS:
        value = getattr(request, name)
        if value is not None and not isinstance(value, UnsetType):
            raise InvalidRequestError(
                f"{name}: Extra inputs are not permitted (a token count takes the prompt only).",
                param=name,
            )
    return msgspec.structs.replace(to_chat_request(request), max_tokens=None)
