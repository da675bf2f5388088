"""What every provider adapter offers the gateway, and what the registry knows of each type.

An adapter is a thin HTTP client around pure translation functions: it turns a canonical
`ChatRequest` into one provider's wire request, sends it over its own pooled connection, and
turns the answer (or the stream, or the error) back into canonical types. It knows nothing
of routing, limits or caching.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from typing import Any, NamedTuple, Protocol, runtime_checkable

from stellara.config.models import ProviderSettings
from stellara.providers.params import ParamPolicy
from stellara.schema.chat import ChatCompletion, ChatCompletionChunk, ChatRequest
from stellara.schema.embeddings import EmbeddingsRequest, EmbeddingsResponse


class ProviderAdapter(Protocol):
    """One configured provider account or endpoint."""

    @property
    def id(self) -> str: ...

    async def chat(self, request: ChatRequest, model: str, *, timeout_s: float) -> ChatCompletion:
        """Answer a non-streaming request with the provider's `model`."""
        ...

    def chat_stream(
        self, request: ChatRequest, model: str, *, timeout_s: float
    ) -> AsyncGenerator[ChatCompletionChunk, None]:
        """Stream the answer; chunks arrive as the provider sends them."""
        ...

    async def close(self) -> None:
        """Release the connection pool."""
        ...


@runtime_checkable
class EmbeddingsAdapter(Protocol):
    """A provider that also serves embeddings (not every one does: Anthropic has none)."""

    async def embed(
        self, request: EmbeddingsRequest, model: str, *, timeout_s: float
    ) -> EmbeddingsResponse:
        """Embed the request's inputs with the provider's `model`."""
        ...


@runtime_checkable
class TokenCountingAdapter(Protocol):
    """A provider that counts a prompt's tokens itself (Anthropic's `count_tokens`); for the
    others the gateway estimates with its own tokenizer."""

    async def count_tokens(self, request: ChatRequest, model: str, *, timeout_s: float) -> int:
        """The input tokens `request`'s prompt costs with the provider's `model`."""
        ...


class ProviderType(NamedTuple):
    """What the registry knows of one config `type`: how to validate an entry, how to build
    its adapter, how to point one at the built-in simulator (used by `--demo` and by the
    contract tests every provider type must pass), and what it does with each canonical
    request parameter, of chat and of embeddings (`providers.params`)."""

    settings_model: type[ProviderSettings]
    create: Callable[[ProviderSettings], ProviderAdapter]
    sim_entry: Callable[[str], dict[str, Any]]
    sim_model: str
    params: ParamPolicy
    embedding_params: ParamPolicy | None = None  # None: the type serves no embeddings
