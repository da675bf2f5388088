"""Embeddings ⇄ Gemini batchEmbedContents (pure)."""

from __future__ import annotations

import base64
import struct

import pytest

from stellara.errors import InvalidRequestError, UpstreamProtocolError
from stellara.providers.google.embeddings import build_batch_embed_body, to_embeddings_response
from stellara.schema.embeddings import EmbeddingsRequest


def test_batch_embed_body_has_one_request_per_input() -> None:
    body = build_batch_embed_body(EmbeddingsRequest(model="emb", input=["a", "b"]), "models/x")
    assert body == (
        b'{"requests":[{"model":"models/x","content":{"parts":[{"text":"a"}]}},'
        b'{"model":"models/x","content":{"parts":[{"text":"b"}]}}]}'
    )


def test_batch_embed_refuses_token_arrays() -> None:
    with pytest.raises(InvalidRequestError):
        build_batch_embed_body(EmbeddingsRequest(model="emb", input=[1, 2, 3]), "x")


def test_embeddings_response_base64_is_little_endian_float32() -> None:
    request = EmbeddingsRequest(model="emb", input="a", encoding_format="base64")
    response = to_embeddings_response(
        b'{"embeddings":[{"values":[0.5,-1.0]}]}', request, model="x", provider="g", prompt_tokens=3
    )
    encoded = response.data[0].embedding
    assert isinstance(encoded, str)
    assert struct.unpack("<2f", base64.b64decode(encoded)) == (0.5, -1.0)
    assert response.usage.prompt_tokens == 3


def test_embeddings_response_garbage_is_protocol_error() -> None:
    with pytest.raises(UpstreamProtocolError):
        to_embeddings_response(
            b'{"nope": 1}',
            EmbeddingsRequest(model="e", input="a"),
            model="x",
            provider="g",
            prompt_tokens=0,
        )
