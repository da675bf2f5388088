"""Builders of the canonical values tests need again and again, with sensible defaults.

Use them instead of spelling out a `ChatRequest`, a `ChatCompletion` or a stream's chunks in
each test: a test then names only the facts it is about (`chat_completion("Paris")`,
`chat_request(stream=True)`), and a field added to a schema is added here once. Every builder
returns a fresh value, so a test may change what it gets.
"""

from __future__ import annotations

import re
from typing import Any

from msgspec import UNSET, UnsetType

from stellara._clock import Clock
from stellara.pipeline.context import RequestContext
from stellara.principal import Principal
from stellara.schema.chat import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatRequest,
    Choice,
    ChunkChoice,
    Delta,
    ResponseMessage,
    Usage,
    UserMessage,
)
from stellara.schema.embeddings import Embedding, EmbeddingsResponse, EmbeddingsUsage

COMPLETION_ID = "chatcmpl-scripted"
CREATED = 1_767_225_600  # 2026-01-01T00:00:00Z
PROMPT_TOKENS = 10
COMPLETION_TOKENS = 20
_WORD = re.compile(r"\s*\S+")


def chat_request(content: str = "Hello", *, model: str = "smart", **fields: Any) -> ChatRequest:
    """A request with one user message, as a client sends it; `fields` sets any other
    `ChatRequest` field (`stream=True`, `max_tokens=5`, …)."""
    return ChatRequest(model=model, messages=[UserMessage(content=content)], **fields)


def usage(prompt_tokens: int = PROMPT_TOKENS, completion_tokens: int = COMPLETION_TOKENS) -> Usage:
    """Token counts as a provider reports them, the total included."""
    return Usage(prompt_tokens, completion_tokens, prompt_tokens + completion_tokens)


def chat_completion(
    content: str = "Hello!",
    *,
    model: str = "gpt-4o",
    usage: Usage | UnsetType | None = UNSET,
    finish_reason: str = "stop",
    completion_id: str = COMPLETION_ID,
) -> ChatCompletion:
    """A provider's answer with one choice. `usage` left unset reports the default token
    counts (see `usage()`); None reports none, as some providers do."""
    message = ResponseMessage("assistant", content)
    return ChatCompletion(
        completion_id,
        "chat.completion",
        CREATED,
        model,
        [Choice(0, message, finish_reason)],
        usage=_usage_or_default(usage),
    )


def stream_chunks(
    content: str = "Hello!",
    *,
    model: str = "gpt-4o",
    usage: Usage | UnsetType | None = UNSET,
    finish_reason: str = "stop",
    completion_id: str = COMPLETION_ID,
) -> list[ChatCompletionChunk]:
    """The chunks of a streamed answer as an OpenAI-shaped provider sends them: the role, one
    chunk per word of `content`, the finish reason, then the usage in a chunk without
    choices (`usage` as in `chat_completion`; None leaves that chunk out).

    Slice the list for a stream cut short, or hand it to `ScriptedStream` to break or stall
    it after a number of chunks.
    """

    def chunk(choices: list[ChunkChoice], chunk_usage: Usage | None = None) -> ChatCompletionChunk:
        return ChatCompletionChunk(
            completion_id, "chat.completion.chunk", CREATED, model, choices, usage=chunk_usage
        )

    chunks = [chunk([ChunkChoice(0, Delta(role="assistant", content=""))])]
    chunks += [chunk([ChunkChoice(0, Delta(content=word))]) for word in _WORD.findall(content)]
    chunks.append(chunk([ChunkChoice(0, Delta(), finish_reason)]))
    reported = _usage_or_default(usage)
    if reported is not None:
        chunks.append(chunk([], reported))
    return chunks


def embeddings_response(
    *vectors: list[float], model: str = "text-embedding-3-small", prompt_tokens: int = 2
) -> EmbeddingsResponse:
    """An embeddings answer holding `vectors` in order (one `[1.0, 0.0, 0.0]` if none)."""
    data = [Embedding(i, list(v)) for i, v in enumerate(vectors or ([1.0, 0.0, 0.0],))]
    return EmbeddingsResponse("list", data, model, EmbeddingsUsage(prompt_tokens, prompt_tokens))


def request_context(
    clock: Clock,
    *,
    request_id: str = "req_1",
    principal: Principal | None = None,
    timeout_s: float = 30.0,
    **fields: Any,
) -> RequestContext:
    """What the HTTP layer makes of a request as it arrives: started now on `clock`, due in
    `timeout_s`, for `principal` (by default alice's key `key_1`, allowed every model).
    `fields` sets any other `RequestContext` field."""
    started_at = clock.monotonic()
    return RequestContext(
        request_id,
        principal or Principal("alice", "key_1"),
        started_at,
        started_at + timeout_s,
        started_epoch_s=clock.time(),
        **fields,
    )


def _usage_or_default(reported: Usage | UnsetType | None) -> Usage | None:
    return usage() if isinstance(reported, UnsetType) else reported
