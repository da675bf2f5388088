"""Gemini embeddings: `models/{model}:batchEmbedContents` and `:embedContent`."""

from __future__ import annotations

from typing import Annotated

import msgspec
import orjson
from aiohttp import web

from stellara.sim import text

DEFAULT_DIMENSIONS = 768  # text-embedding-004's size


class _Part(msgspec.Struct):
    text: str


class _Content(msgspec.Struct):
    parts: Annotated[list[_Part], msgspec.Meta(min_length=1)]


class _EmbedRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    content: _Content
    model: str | None = None
    task_type: str | None = None
    title: str | None = None
    output_dimensionality: Annotated[int, msgspec.Meta(ge=1, le=3072)] | None = None


class _BatchRequest(msgspec.Struct, forbid_unknown_fields=True):
    requests: Annotated[list[_EmbedRequest], msgspec.Meta(min_length=1, max_length=100)]


_batch_decoder = msgspec.json.Decoder(_BatchRequest)
_single_decoder = msgspec.json.Decoder(_EmbedRequest)


def _values(request: _EmbedRequest) -> dict[str, list[float]]:
    words = " ".join(part.text for part in request.content.parts)
    return {"values": text.embed(words, request.output_dimensionality or DEFAULT_DIMENSIONS)}


def answer_embeddings(method: str, raw: bytes) -> web.Response:
    """Answer `batchEmbedContents` or `embedContent`; a malformed body is Google's 400."""
    body: dict[str, object]
    try:
        if method == "batchEmbedContents":
            batch = _batch_decoder.decode(raw)
            body = {"embeddings": [_values(request) for request in batch.requests]}
        else:
            body = {"embedding": _values(_single_decoder.decode(raw))}
    except msgspec.DecodeError as exc:
        message = f"Invalid JSON payload received. {exc}"
        payload = {"error": {"code": 400, "message": message, "status": "INVALID_ARGUMENT"}}
        return web.Response(status=400, body=orjson.dumps(payload), content_type="application/json")
    return web.Response(body=orjson.dumps(body), content_type="application/json")
