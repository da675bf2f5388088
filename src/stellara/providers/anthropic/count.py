"""Pure translation for Anthropic's token counting (`POST /v1/messages/count_tokens`).

The prompt is translated exactly as for a message (`chat.build_messages_request`), so a count
measures what the same request would send; only the prompt's fields go, as the count
endpoint refuses generation settings such as `max_tokens`.
"""

from __future__ import annotations

import msgspec

from stellara import _json
from stellara.errors import UpstreamProtocolError
from stellara.providers.anthropic.chat import build_messages_request
from stellara.schema.chat import ChatRequest
from stellara.wire import anthropic_count as wire


def build_count_body(
    request: ChatRequest, model: str, *, default_max_tokens: int, allows_sampling: bool
) -> bytes:
    """The JSON body counting `request`'s prompt for `model`."""
    prompt = build_messages_request(
        request, model, default_max_tokens=default_max_tokens, allows_sampling=allows_sampling
    )
    body = wire.CountTokensBody(
        model=prompt.model,
        messages=prompt.messages,
        system=prompt.system,
        tools=prompt.tools,
        tool_choice=prompt.tool_choice,
        thinking=prompt.thinking,
    )
    return _json.encode(body)


def parse_count(payload: bytes, provider: str) -> int:
    """The `input_tokens` of a count answer."""
    try:
        return wire.count_decoder.decode(payload).input_tokens
    except msgspec.DecodeError as exc:
        raise UpstreamProtocolError(
            f"unreadable token count from the provider: {exc}", provider=provider
        ) from exc
