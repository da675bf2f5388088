"""The public models as Gemini's `Model` resources, paged as `GET /v1beta/models` pages them."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass

from stellara.errors import InvalidRequestError
from stellara.wire.google_inbound import ListModelsResponse, Model

DEFAULT_PAGE_SIZE = 50  # Google's default
MAX_PAGE_SIZE = 1000  # and its most
CHAT_METHODS = ("generateContent", "streamGenerateContent", "countTokens")
EMBED_METHODS = ("embedContent", "batchEmbedContents")
MODEL_VERSION = "stellara"  # a public model is a route, not one provider model's version


@dataclass(frozen=True, slots=True)
class PublicModelInfo:
    """What the gateway knows of a public model that a `Model` resource shows."""

    name: str
    embeds: bool  # a target serves embeddings
    input_token_limit: int | None = None
    output_token_limit: int | None = None


def model_resource(info: PublicModelInfo) -> Model:
    methods = [*CHAT_METHODS, *(EMBED_METHODS if info.embeds else ())]
    return Model(
        name=f"models/{info.name}",
        base_model_id=info.name,
        version=MODEL_VERSION,
        display_name=info.name,
        supported_generation_methods=methods,
        input_token_limit=info.input_token_limit,
        output_token_limit=info.output_token_limit,
    )


def model_page(
    models: Sequence[PublicModelInfo], page_size: str | None, page_token: str | None
) -> ListModelsResponse:
    """One page of `models`; `nextPageToken` (opaque to the client) names where the next
    one starts.

    Raises:
        InvalidRequestError: A page size that is not a positive whole number, or a token this
            gateway did not make.
    """
    size = _page_size(page_size)
    start = _offset(page_token) if page_token else 0
    page = models[start : start + size]
    has_more = start + size < len(models)
    token = _token(start + size) if has_more else None
    return ListModelsResponse([model_resource(info) for info in page], next_page_token=token)


def _page_size(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_PAGE_SIZE
    try:
        size = int(raw)
    except ValueError:
        size = -1
    if size < 0:
        raise InvalidRequestError("pageSize must be a whole number ≥ 0.", param="pageSize")
    return min(size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)  # 0: the default, as Google reads it


def _token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()


def _offset(token: str) -> int:
    try:
        text = base64.urlsafe_b64decode(token.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    kind, _, number = text.partition(":")
    if kind != "offset" or not number.isdigit():
        raise InvalidRequestError("pageToken is not one this gateway gave.", param="pageToken")
    return int(number)
