"""OpenAI Embeddings request and response, the canonical form for every provider."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta, Struct

# A string, a list of strings, a token array, or a list of token arrays, as OpenAI accepts.
# msgspec allows one array type per union, so the list is checked for sameness after decoding.
EmbeddingInput = (
    Annotated[str, Meta(min_length=1)]
    | Annotated[list[str | int | list[int]], Meta(min_length=1, max_length=2048)]
)


class EmbeddingsRequest(Struct, omit_defaults=True):
    model: Annotated[str, Meta(min_length=1)]
    input: EmbeddingInput
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: Annotated[int, Meta(ge=1)] | None = None
    user: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.input, list):
            kinds = {type(item) for item in self.input}
            if len(kinds) > 1:
                raise ValueError("`input` must be all strings, all tokens or all token lists")
            if str in kinds and any(not item for item in self.input):
                raise ValueError("`input` strings must not be empty")

    def texts(self) -> list[str] | None:
        """The inputs as strings, or None when they are token arrays (OpenAI-only)."""
        if isinstance(self.input, str):
            return [self.input]
        if all(isinstance(item, str) for item in self.input):
            return [item for item in self.input if isinstance(item, str)]
        return None


class Embedding(Struct):
    index: int
    # A list of floats, or with `encoding_format: base64` little-endian float32s in base64.
    embedding: list[float] | str
    object: Literal["embedding"] = "embedding"


class EmbeddingsUsage(Struct):
    prompt_tokens: int = 0
    total_tokens: int = 0


class EmbeddingsResponse(Struct):
    object: Literal["list"]
    data: list[Embedding]
    model: str
    usage: EmbeddingsUsage


embeddings_request_decoder = msgspec.json.Decoder(EmbeddingsRequest)
embeddings_response_decoder = msgspec.json.Decoder(EmbeddingsResponse)
