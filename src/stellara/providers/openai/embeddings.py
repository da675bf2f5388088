"""Pure translation of embeddings requests and responses for OpenAI's wire format."""

from __future__ import annotations

import msgspec

from stellara import _json
from stellara.errors import UpstreamProtocolError
from stellara.schema.embeddings import (
    EmbeddingsRequest,
    EmbeddingsResponse,
    embeddings_response_decoder,
)


def build_embeddings_body(request: EmbeddingsRequest, model: str) -> bytes:
    """The JSON body for `POST /embeddings` asking `model`."""
    return _json.encode(msgspec.structs.replace(request, model=model))


def parse_embeddings_response(body: bytes, provider: str) -> EmbeddingsResponse:
    try:
        return embeddings_response_decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise UpstreamProtocolError(
            f"provider {provider!r} sent an invalid embeddings list: {exc}", provider=provider
        ) from exc
