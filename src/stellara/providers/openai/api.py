"""The OpenAI adapter: URL and auth, around the pure translators of this package."""

from __future__ import annotations

from collections.abc import AsyncGenerator

from yarl import URL

from stellara.config.models import ProviderSettings
from stellara.providers._http import UpstreamHTTP, parse_url
from stellara.providers._sse import iter_sse
from stellara.providers.base import ProviderAdapter
from stellara.providers.openai.chat import build_chat_body, parse_chat_response
from stellara.providers.openai.embeddings import build_embeddings_body, parse_embeddings_response
from stellara.providers.openai.errors import error_from_response
from stellara.providers.openai.stream import OpenAIStreamParser
from stellara.schema.chat import ChatCompletion, ChatCompletionChunk, ChatRequest
from stellara.schema.embeddings import EmbeddingsRequest, EmbeddingsResponse

DEFAULT_BASE_URL = "https://api.openai.com/v1"


class OpenAISettings(ProviderSettings):
    """`type: openai`. `base_url` includes `/v1`, as in OpenAI's own SDK."""


class OpenAIAdapter:
    """Talks to one OpenAI-compatible endpoint over one pooled session."""

    def __init__(self, settings: ProviderSettings) -> None:
        self._id = settings.id
        self._base_url = (settings.base_url or DEFAULT_BASE_URL).rstrip("/")
        self._urls: dict[tuple[str, str], URL] = {}  # bounded by the config's models
        self._http = UpstreamHTTP(settings, self._auth_headers(settings), error_from_response)

    @property
    def id(self) -> str:
        return self._id

    def _auth_headers(self, settings: ProviderSettings) -> dict[str, str]:
        if settings.api_key is None:
            return {}
        return {"Authorization": f"Bearer {settings.api_key.get_secret_value()}"}

    def _wire_model(self, model: str) -> str:
        """The model name the body carries (Azure puts its deployment there)."""
        return model

    def _url_for(self, operation: str, model: str) -> str:
        """The URL of `operation` (`chat/completions`, `embeddings`) for `model`."""
        return f"{self._base_url}/{operation}"

    def _url(self, operation: str, model: str) -> URL:
        url = self._urls.get((operation, model))
        if url is None:
            url = self._urls[operation, model] = parse_url(self._url_for(operation, model))
        return url

    async def chat(self, request: ChatRequest, model: str, *, timeout_s: float) -> ChatCompletion:
        body = build_chat_body(request, self._wire_model(model))
        payload = await self._http.post_json(
            self._url("chat/completions", model), body, timeout_s=timeout_s
        )
        return parse_chat_response(payload, self._id)

    async def embed(
        self, request: EmbeddingsRequest, model: str, *, timeout_s: float
    ) -> EmbeddingsResponse:
        body = build_embeddings_body(request, self._wire_model(model))
        payload = await self._http.post_json(
            self._url("embeddings", model), body, timeout_s=timeout_s
        )
        return parse_embeddings_response(payload, self._id)

    async def chat_stream(
        self, request: ChatRequest, model: str, *, timeout_s: float
    ) -> AsyncGenerator[ChatCompletionChunk, None]:
        body = build_chat_body(request, self._wire_model(model))
        parser = OpenAIStreamParser(self._id)
        url = self._url("chat/completions", model)
        async with self._http.open_stream(url, body, timeout_s=timeout_s) as response:
            async for event in iter_sse(response.content):
                chunk = parser.feed(event.data)
                if chunk is None:
                    break
                yield chunk
            parser.finish()

    async def close(self) -> None:
        await self._http.close()


def create_adapter(settings: ProviderSettings) -> ProviderAdapter:
    if not isinstance(settings, OpenAISettings):
        raise TypeError(f"expected OpenAISettings, got {type(settings).__name__}")
    return OpenAIAdapter(settings)
