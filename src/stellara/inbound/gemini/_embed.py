"""Gemini `embedContent` / `batchEmbedContents` ⇄ the canonical embeddings request and answer."""

from __future__ import annotations

from collections.abc import Sequence

from stellara.errors import InvalidRequestError, UpstreamProtocolError
from stellara.schema.embeddings import EmbeddingsRequest, EmbeddingsResponse
from stellara.wire.google import BatchEmbedResponse, ContentEmbedding
from stellara.wire.google_inbound import (
    BatchEmbedContentsParams,
    EmbedContentParams,
    EmbedContentResponse,
)


def to_embeddings_request(
    params: EmbedContentParams | BatchEmbedContentsParams, model: str
) -> EmbeddingsRequest:
    """One canonical request for one content or a batch, to `model` (the URL's).

    A content's text parts are joined with newlines into one input, as they are one text to
    embed. A batch is one canonical request, so its entries must name the URL's model and ask
    for the same `outputDimensionality`.

    Raises:
        InvalidRequestError: A part that is not text, an empty text, or a batch that differs.
    """
    if isinstance(params, EmbedContentParams):
        entries: Sequence[tuple[str, EmbedContentParams]] = [("", params)]
    else:
        entries = [(f"requests[{at}].", entry) for at, entry in enumerate(params.requests)]
    texts: list[str | int | list[int]] = [_text(entry, path, model) for path, entry in entries]
    dimensions = {entry.output_dimensionality for _, entry in entries}
    if len(dimensions) > 1:
        raise InvalidRequestError(
            "requests: every entry must ask for the same outputDimensionality.",
            param="requests",
        )
    return EmbeddingsRequest(model=model, input=texts, dimensions=dimensions.pop())


def _text(entry: EmbedContentParams, path: str, model: str) -> str:
    named = (entry.model or "").removeprefix("models/")
    if named and named != model:
        raise InvalidRequestError(
            f"{path}model: {entry.model!r} differs from the URL's model {model!r}.",
            param=f"{path}model",
        )
    texts = []
    for at, part in enumerate(entry.content.parts):
        if part.text is None:
            where = f"{path}content.parts[{at}]"
            raise InvalidRequestError(
                f"{where}: only text can be embedded through the gateway.", param=where
            )
        texts.append(part.text)
    text = "\n".join(texts)
    if not text:
        where = f"{path}content"
        raise InvalidRequestError(f"{where}: there is no text to embed.", param=where)
    return text


def _embeddings(response: EmbeddingsResponse) -> list[ContentEmbedding]:
    values = []
    for item in sorted(response.data, key=lambda item: item.index):
        if isinstance(item.embedding, str):  # only when base64 is asked for, which is never
            raise UpstreamProtocolError(
                "the provider answered base64 embeddings to a float request", provider=""
            )
        values.append(ContentEmbedding(values=item.embedding))
    return values


def to_embed_response(response: EmbeddingsResponse) -> EmbedContentResponse:
    """`embedContent`'s answer: the one embedding."""
    return EmbedContentResponse(embedding=_embeddings(response)[0])


def to_batch_embed_response(response: EmbeddingsResponse) -> BatchEmbedResponse:
    """`batchEmbedContents`' answer: an embedding per entry, in order."""
    return BatchEmbedResponse(embeddings=_embeddings(response))
