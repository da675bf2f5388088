"""OpenAI's legacy Completions API types (`POST /v1/completions`), as msgspec structs.

The gateway answers them through chat models (`inbound.completions`); the shapes are OpenAI's
`CreateCompletionRequest` and `CreateCompletionResponse`, which is also each streamed event.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta, Struct

from stellara.schema.chat import Penalty, StreamOptions, Temperature, Usage


class CompletionRequest(Struct, omit_defaults=True):
    """A legacy completion request. Unknown fields are ignored (chat requests keep them)."""

    model: Annotated[str, Meta(min_length=1)]
    # A string, or a list of strings or of token arrays (msgspec takes one list type per union).
    prompt: str | list[str | int | list[int]] | None
    best_of: Annotated[int, Meta(ge=0, le=20)] | None = None
    echo: bool | None = None
    frequency_penalty: Penalty | None = None
    presence_penalty: Penalty | None = None
    logit_bias: dict[str, float] | None = None
    logprobs: Annotated[int, Meta(ge=0, le=5)] | None = None
    max_tokens: Annotated[int, Meta(ge=0)] | None = None
    n: Annotated[int, Meta(ge=1, le=128)] | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    suffix: str | None = None
    temperature: Temperature | None = None
    top_p: Annotated[float, Meta(ge=0, le=1)] | None = None
    user: str | None = None


class CompletionLogprobs(Struct):
    """Per token of a choice's text: the token, its logprob, the most likely alternatives
    and where the token starts in the text."""

    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: list[dict[str, float]]
    text_offset: list[int]


class CompletionChoice(Struct):
    text: str
    index: int
    logprobs: CompletionLogprobs | None
    finish_reason: str | None  # stop | length | content_filter; null until a stream's last


class TextCompletion(Struct, omit_defaults=True):
    """A whole answer, and each event of a streamed one."""

    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None
    system_fingerprint: str | None = None


request_decoder = msgspec.json.Decoder(CompletionRequest)
