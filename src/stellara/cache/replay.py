"""Serve a stored (non-streaming) answer to a streaming request as a valid OpenAI stream.

The answer cache stores `ChatCompletion`s; a streaming request that hits it must still see
chunks shaped like a provider's, so the gateway can relay them through the same path. Per
choice the stream is, as OpenAI sends it:

1. ``{"role": "assistant", "content": ""}`` — ``content`` is left out when the stored message
   has ``content: null`` (a tool-call-only or refusal answer), as OpenAI does, so that
   `StreamAssembler` rebuilds ``null`` rather than ``""``;
2. the content in pieces of about 16 to 32 characters cut after whitespace (a word longer than
   32 characters is cut inside), so a client renders a real stream;
3. one chunk per tool call, whole: ``index``, ``id``, ``type``, ``function.name`` and all of
   ``function.arguments`` (then the deprecated ``function_call``, if any, likewise);
4. the refusal, if any, in pieces like the content;
5. an empty delta with the choice's ``finish_reason``.

With several choices (n > 1) the per-choice sequences are interleaved round-robin, one choice
per chunk (choice 0's first chunk, choice 1's first chunk, …), as OpenAI interleaves them; a
client must therefore group by ``index``, which it has to do for a live stream anyway. When
``include_usage`` is set, a last chunk with ``choices: []`` carries the stored ``usage``.

What a stream cannot carry is dropped: the message's ``annotations`` and ``audio`` (the delta
has no such fields) and the choice's ``logprobs`` (a stream's are per piece, and the stored
list cannot be cut to match the pieces). The cache should not serve requests that ask for them.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import AsyncGenerator

from stellara.schema.chat import (
    ChatCompletion,
    ChatCompletionChunk,
    Choice,
    ChunkChoice,
    Delta,
    FunctionCallDelta,
    ToolCallDelta,
    Usage,
)

__all__ = ["replay_chunks", "replay_stream", "split_text"]

MIN_PIECE_CHARS = 16
MAX_PIECE_CHARS = 32

# A word with the whitespace after it, or whitespace that starts the text.
_WORD = re.compile(r"\S+\s*|\s+")


def split_text(text: str) -> list[str]:
    """Cut text into stream pieces of about 16 to 32 characters whose concatenation is `text`.

    Cuts fall after whitespace; a word longer than `MAX_PIECE_CHARS` (a URL, text in a script
    written without spaces) is cut inside so that no piece exceeds that length.

    Args:
        text: The content or refusal to stream.

    Returns:
        The pieces, in order; empty for an empty text.
    """
    pieces: list[str] = []
    current = ""
    for match in _WORD.finditer(text):
        word = match.group()
        for start in range(0, len(word), MAX_PIECE_CHARS):
            part = word[start : start + MAX_PIECE_CHARS]
            if current and len(current) + len(part) > MAX_PIECE_CHARS:
                pieces.append(current)
                current = ""
            current += part
            if len(current) >= MIN_PIECE_CHARS:
                pieces.append(current)
                current = ""
    if current:
        pieces.append(current)
    return pieces


def _choice_chunks(choice: Choice) -> list[ChunkChoice]:
    """The stream of one choice, as chunk choices in the order a client must see them."""
    message, index = choice.message, choice.index
    first = Delta(role="assistant", content="" if message.content is not None else None)
    out = [ChunkChoice(index=index, delta=first)]
    out.extend(
        ChunkChoice(index=index, delta=Delta(content=piece))
        for piece in split_text(message.content or "")
    )
    for position, call in enumerate(message.tool_calls or ()):
        delta = ToolCallDelta(
            index=position,
            id=call.id,
            type=call.type,
            function=FunctionCallDelta(name=call.function.name, arguments=call.function.arguments),
        )
        out.append(ChunkChoice(index=index, delta=Delta(tool_calls=[delta])))
    if message.function_call is not None:
        legacy = FunctionCallDelta(
            name=message.function_call.name, arguments=message.function_call.arguments
        )
        out.append(ChunkChoice(index=index, delta=Delta(function_call=legacy)))
    if message.refusal is not None:
        out.extend(
            ChunkChoice(index=index, delta=Delta(refusal=piece))
            for piece in split_text(message.refusal) or [""]
        )
    finish = choice.finish_reason
    out.append(ChunkChoice(index, Delta(), finish_reason=finish, stop_reason=choice.stop_reason))
    return out


def replay_chunks(completion: ChatCompletion, *, include_usage: bool) -> list[ChatCompletionChunk]:
    """Turn a stored completion into the chunks of an equivalent OpenAI stream.

    Use it when a cached answer is served to a request with ``stream: true``; `replay_stream`
    is the same sequence shaped like a provider stream.

    Args:
        completion: The stored answer.
        include_usage: The request's ``stream_options.include_usage``: append a last chunk
            with no choices and the completion's usage (zeros if none was stored).

    Returns:
        The chunks, each carrying the completion's id, created, model, system fingerprint and
        service tier.
    """

    def chunk(choices: list[ChunkChoice], usage: Usage | None = None) -> ChatCompletionChunk:
        return ChatCompletionChunk(
            id=completion.id,
            object="chat.completion.chunk",
            created=completion.created,
            model=completion.model,
            choices=choices,
            usage=usage,
            system_fingerprint=completion.system_fingerprint,
            service_tier=completion.service_tier,
        )

    per_choice = [_choice_chunks(choice) for choice in completion.choices]
    chunks = [
        chunk([choice_chunk])
        for row in itertools.zip_longest(*per_choice)
        for choice_chunk in row
        if choice_chunk is not None
    ]
    if include_usage:
        chunks.append(chunk([], completion.usage or Usage()))
    return chunks


async def replay_stream(
    completion: ChatCompletion, *, include_usage: bool
) -> AsyncGenerator[ChatCompletionChunk, None]:
    """Yield `replay_chunks` as an async stream, so a cache hit flows where a provider's would.

    Args:
        completion: The stored answer.
        include_usage: Whether to end with the usage chunk.

    Yields:
        The chunks of `replay_chunks`, in order, without waiting between them.
    """
    for chunk in replay_chunks(completion, include_usage=include_usage):
        yield chunk
