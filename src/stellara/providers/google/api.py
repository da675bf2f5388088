"""The Gemini API adapter: URL and auth, around the pure translators of this package."""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator, Callable

from yarl import URL

from stellara._clock import Clock, SystemClock
from stellara.config.models import ProviderSettings
from stellara.providers._http import UpstreamHTTP, parse_url
from stellara.providers._sse import iter_sse
from stellara.providers.base import ProviderAdapter
from stellara.providers.google.chat import (
    build_generate_body,
    parse_generate_response,
    to_completion,
)
from stellara.providers.google.embeddings import build_batch_embed_body, to_embeddings_response
from stellara.providers.google.errors import error_from_response
from stellara.providers.google.stream import GeminiStreamParser
from stellara.schema.chat import ChatCompletion, ChatCompletionChunk, ChatRequest
from stellara.schema.embeddings import EmbeddingsRequest, EmbeddingsResponse

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
API_VERSION = "v1beta"


class GoogleSettings(ProviderSettings):
    """`type: google`: the Gemini API. `base_url` is the host root, as in Google's own SDK."""


def random_completion_id() -> str:
    """A fresh `chatcmpl-…` id, for answers that carry no `responseId` of their own."""
    return f"chatcmpl-{os.urandom(12).hex()}"


class GoogleAdapter:
    """Talks to the Gemini API (or anything serving its format) over one pooled session.

    Args:
        settings: The provider entry.
        clock: Where `created` timestamps come from.
        new_id: Makes a completion id when Gemini sends no `responseId`.
    """

    def __init__(
        self,
        settings: GoogleSettings,
        *,
        clock: Clock | None = None,
        new_id: Callable[[], str] = random_completion_id,
    ) -> None:
        self._id = settings.id
        self._base_url = (settings.base_url or DEFAULT_BASE_URL).rstrip("/")
        headers = {}
        if settings.api_key is not None:
            headers["x-goog-api-key"] = settings.api_key.get_secret_value()
        self._urls: dict[tuple[str, bool], URL] = {}
        self._embed_urls: dict[str, URL] = {}
        self._clock = clock or SystemClock()
        self._new_id = new_id
        self._http = UpstreamHTTP(settings, headers, error_from_response)

    @property
    def id(self) -> str:
        return self._id

    def _url(self, model: str, *, is_streaming: bool) -> URL:
        """The model's URL, parsed once per model (the config names only a few)."""
        url = self._urls.get((model, is_streaming))
        if url is None:
            # Config may name a model as Google lists it ("models/gemini-2.0-flash") or bare.
            base = f"{self._base_url}/{API_VERSION}/models/{model.removeprefix('models/')}"
            text = (
                f"{base}:streamGenerateContent?alt=sse"
                if is_streaming
                else f"{base}:generateContent"
            )
            url = self._urls[(model, is_streaming)] = parse_url(text)
        return url

    async def chat(self, request: ChatRequest, model: str, *, timeout_s: float) -> ChatCompletion:
        body = build_generate_body(request, model)
        url = self._url(model, is_streaming=False)
        payload = await self._http.post_json(url, body, timeout_s=timeout_s)
        answer = parse_generate_response(payload, self._id)
        return to_completion(
            answer,
            provider=self._id,
            completion_id=self._completion_id(answer.response_id),
            created=int(self._clock.time()),
            model=model,
        )

    async def chat_stream(
        self, request: ChatRequest, model: str, *, timeout_s: float
    ) -> AsyncGenerator[ChatCompletionChunk, None]:
        body = build_generate_body(request, model)
        url = self._url(model, is_streaming=True)
        async with self._http.open_stream(url, body, timeout_s=timeout_s) as response:
            parser = GeminiStreamParser(
                self._id,
                fallback_id=self._new_id(),
                created=int(self._clock.time()),
                model=model,
            )
            async for event in iter_sse(response.content):
                for chunk in parser.feed(event.data):
                    yield chunk
            usage_chunk = parser.finish()
        if usage_chunk is not None:
            yield usage_chunk

    async def embed(
        self, request: EmbeddingsRequest, model: str, *, timeout_s: float
    ) -> EmbeddingsResponse:
        """Embed via `batchEmbedContents`. Gemini reports no token usage for embeddings, so
        the usage is 0 here and the gateway estimates it with its tokenizer."""
        body = build_batch_embed_body(request, model)
        payload = await self._http.post_json(self._embed_url(model), body, timeout_s=timeout_s)
        return to_embeddings_response(
            payload, request, model=model, provider=self._id, prompt_tokens=0
        )

    def _embed_url(self, model: str) -> URL:
        url = self._embed_urls.get(model)
        if url is None:
            name = model.removeprefix("models/")
            url = self._embed_urls[model] = parse_url(
                f"{self._base_url}/{API_VERSION}/models/{name}:batchEmbedContents"
            )
        return url

    def _completion_id(self, response_id: str | None) -> str:
        return f"chatcmpl-{response_id}" if response_id else self._new_id()

    async def close(self) -> None:
        await self._http.close()


def create_adapter(settings: ProviderSettings) -> ProviderAdapter:
    if not isinstance(settings, GoogleSettings):
        raise TypeError(f"expected GoogleSettings, got {type(settings).__name__}")
    return GoogleAdapter(settings)
