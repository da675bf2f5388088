"""Pure translation of embeddings to and from Gemini's `batchEmbedContents`."""

from __future__ import annotations

import base64
import sys
from array import array

import msgspec

from stellara import _json
from stellara.errors import InvalidRequestError, UpstreamProtocolError
from stellara.schema.embeddings import (
    Embedding,
    EmbeddingsRequest,
    EmbeddingsResponse,
    EmbeddingsUsage,
)
from stellara.wire.google import (
    BatchEmbedRequest,
    Content,
    EmbedContentRequest,
    Part,
    batch_embed_response_decoder,
)


def build_batch_embed_body(request: EmbeddingsRequest, model: str) -> bytes:
    """One `embedContent` request per input; Gemini embeds text only."""
    texts = request.texts()
    if texts is None:
        raise InvalidRequestError(
            "This model takes text inputs only, not token arrays.", param="input"
        )
    name = f"models/{model.removeprefix('models/')}"
    requests = [
        EmbedContentRequest(name, Content([Part(text)]), request.dimensions) for text in texts
    ]
    return _json.encode(BatchEmbedRequest(requests))


def to_embeddings_response(
    body: bytes, request: EmbeddingsRequest, *, model: str, provider: str, prompt_tokens: int
) -> EmbeddingsResponse:
    """The canonical list; base64 when the client asked for it, as OpenAI encodes it."""
    try:
        answer = batch_embed_response_decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise UpstreamProtocolError(
            f"provider {provider!r} sent an invalid embeddings answer: {exc}", provider=provider
        ) from exc
    as_base64 = request.encoding_format == "base64"
    data = [
        Embedding(index, _base64_floats(item.values) if as_base64 else item.values)
        for index, item in enumerate(answer.embeddings)
    ]
    usage = EmbeddingsUsage(prompt_tokens=prompt_tokens, total_tokens=prompt_tokens)
    return EmbeddingsResponse("list", data, model, usage)


def _base64_floats(values: list[float]) -> str:
    packed = array("f", values)
    if sys.byteorder != "little":  # OpenAI's base64 form is little-endian float32
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode()
