"""The Anthropic adapter: URL, auth and the clock, around the pure translators of this package."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator

from pydantic import Field

from stellara.config.models import ProviderSettings
from stellara.providers._http import UpstreamHTTP, parse_url
from stellara.providers._sse import iter_sse
from stellara.providers.anthropic.chat import build_messages_body, parse_message
from stellara.providers.anthropic.count import build_count_body, parse_count
from stellara.providers.anthropic.errors import error_from_response
from stellara.providers.anthropic.stream import AnthropicStreamParser
from stellara.providers.anthropic.tools import answer_tool_name
from stellara.providers.base import ProviderAdapter
from stellara.schema.chat import ChatCompletion, ChatCompletionChunk, ChatRequest

DEFAULT_BASE_URL = "https://api.anthropic.com"
SAMPLING_REMOVED_IN = "2026-10-21"
"""The first API version that refuses `temperature` and `top_p`."""


class AnthropicSettings(ProviderSettings):
    """`type: anthropic`. `base_url` is the host root, as in Anthropic's own SDK.

    Attributes:
        anthropic_version: The `anthropic-version` header. 2023-06-01 is the version that still
            takes `temperature` and `top_p`; from 2026-10-21 they are not sent.
        default_max_tokens: `max_tokens` for requests that give none (Anthropic requires one).
        strict_tools: Send `strict: true` on tools when the client asked for strict schemas
            (a strict `json_schema` response format, tools marked strict). Only models with
            structured outputs (Claude 4.5 and later) take it; older ones refuse the request.
    """

    anthropic_version: str = "2023-06-01"
    default_max_tokens: int = Field(default=4096, ge=1)
    strict_tools: bool = False


class AnthropicAdapter:
    """Talks to one Anthropic Messages API endpoint over one pooled session."""

    def __init__(self, settings: AnthropicSettings) -> None:
        self._id = settings.id
        base_url = (settings.base_url or DEFAULT_BASE_URL).rstrip("/")
        self._url = parse_url(f"{base_url}/v1/messages")
        self._count_url = parse_url(f"{base_url}/v1/messages/count_tokens")
        self._default_max_tokens = settings.default_max_tokens
        # Versions are ISO dates, so they compare as strings.
        self._allows_sampling = settings.anthropic_version < SAMPLING_REMOVED_IN
        self._strict_tools = settings.strict_tools
        headers = {"anthropic-version": settings.anthropic_version}
        if settings.api_key is not None:
            headers["x-api-key"] = settings.api_key.get_secret_value()
        self._http = UpstreamHTTP(settings, headers, error_from_response)

    @property
    def id(self) -> str:
        return self._id

    async def chat(self, request: ChatRequest, model: str, *, timeout_s: float) -> ChatCompletion:
        payload = await self._http.post_json(
            self._url, self._body(request, model), timeout_s=timeout_s
        )
        answer_tool = answer_tool_name(request.response_format)
        return parse_message(payload, self._id, created=int(time.time()), answer_tool=answer_tool)

    async def chat_stream(
        self, request: ChatRequest, model: str, *, timeout_s: float
    ) -> AsyncGenerator[ChatCompletionChunk, None]:
        body = self._body(request, model)
        answer_tool = answer_tool_name(request.response_format)
        parser = AnthropicStreamParser(self._id, created=int(time.time()), answer_tool=answer_tool)
        async with self._http.open_stream(self._url, body, timeout_s=timeout_s) as response:
            async for event in iter_sse(response.content):
                for chunk in parser.feed(event.data):
                    yield chunk
                if parser.is_done:
                    break
            parser.finish()

    async def count_tokens(self, request: ChatRequest, model: str, *, timeout_s: float) -> int:
        body = build_count_body(
            request,
            model,
            default_max_tokens=self._default_max_tokens,
            allows_sampling=self._allows_sampling,
        )
        return parse_count(
            await self._http.post_json(self._count_url, body, timeout_s=timeout_s), self._id
        )

    def _body(self, request: ChatRequest, model: str) -> bytes:
        return build_messages_body(
            request,
            model,
            default_max_tokens=self._default_max_tokens,
            allows_sampling=self._allows_sampling,
            strict_tools=self._strict_tools,
        )

    async def close(self) -> None:
        await self._http.close()


def create_adapter(settings: ProviderSettings) -> ProviderAdapter:
    """Build the adapter for a `type: anthropic` provider entry."""
    if not isinstance(settings, AnthropicSettings):
        raise TypeError(f"expected AnthropicSettings, got {type(settings).__name__}")
    return AnthropicAdapter(settings)
