"""Offline token counting with OpenAI's BPE encodings, shipped with the package."""

from stellara.tokens.counter import (
    EncodingDataError,
    EncodingSpec,
    TokenCounter,
    encoding_name_for,
    load_encoding,
)

__all__ = [
    "EncodingDataError",
    "EncodingSpec",
    "TokenCounter",
    "encoding_name_for",
    "load_encoding",
]
