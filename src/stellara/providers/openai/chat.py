"""Pure translation between canonical chat types and OpenAI's wire bodies."""

from __future__ import annotations

import msgspec

from stellara import _json
from stellara.errors import UpstreamProtocolError
from stellara.schema.chat import ChatCompletion, ChatRequest, StreamOptions, completion_decoder

_INCLUDE_USAGE = StreamOptions(include_usage=True)


def build_chat_body(request: ChatRequest, model: str) -> bytes:
    """The JSON body for `POST /chat/completions` asking `model`.

    Streams always ask for usage, so the gateway can account for every streamed token; the
    extra usage chunk is withheld from clients that did not ask for it.
    """
    if request.is_streaming:
        request = msgspec.structs.replace(request, model=model, stream_options=_INCLUDE_USAGE)
    else:
        request = msgspec.structs.replace(request, model=model)
    return _json.encode(request)


def parse_chat_response(body: bytes, provider: str) -> ChatCompletion:
    """Decode a `chat.completion`; anything else is the provider breaking the protocol."""
    try:
        return completion_decoder.decode(body)
    except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
        raise UpstreamProtocolError(
            f"provider {provider!r} sent an invalid chat.completion: {exc}", provider=provider
        ) from exc
