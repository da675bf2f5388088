"""What a request will use, estimated before the call: for limits to reserve, for `cost` to rank.

Tokens are the prompt (counted with the model's tokenizer) plus the answer's ceiling: the
request's `max_completion_tokens` or `max_tokens`, else `limits.default_max_tokens_reserve`.
The estimate is an upper bound whenever the request sets a ceiling; the settle after the call
replaces it with what the provider reported.

Limits run before routing, so the provider that will answer is not known yet. The estimate
counts with the tokenizer of the public model's first target and prices that target, the one a
healthy route uses; a fallback to a pricier target is corrected by the settle. The `cost`
strategy prices the same token counts on every target, so its order is fair.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import NamedTuple

from stellara.catalog import Catalog, cost_usd
from stellara.schema.chat import ChatRequest, Usage
from stellara.schema.embeddings import EmbeddingsRequest
from stellara.state.base import Amounts
from stellara.tokens import TokenCounter


class PriceKey(NamedTuple):
    """The provider type and model whose prices and tokenizer an estimate uses."""

    provider_type: str
    model: str


class RequestEstimate:
    """One request's tokens, counted on first need and then kept; one per request.

    The limits stage reads `amounts`, the `cost` strategy `usd_on` for each target: the prompt is
    counted once for both, and not at all when neither needs it (counting is the expensive part).
    """

    __slots__ = ("_catalog", "_count", "_prompt_tokens", "output_tokens", "price")

    def __init__(
        self,
        count: Callable[[str], int],
        output_tokens: int,
        price: PriceKey | None,
        catalog: Catalog,
    ) -> None:
        """`count(model)` counts the prompt with `model`'s tokenizer. `price` is `None` when no
        target of the model serves the request: it is refused next, so nothing is counted."""
        self._count = count
        self._prompt_tokens: int | None = None
        self._catalog = catalog
        self.output_tokens = output_tokens
        self.price = price

    @property
    def prompt_tokens(self) -> int:
        """The prompt's tokens by the tokenizer of `price`'s model, counted on first use."""
        if self._prompt_tokens is None:
            self._prompt_tokens = 0 if self.price is None else self._count(self.price.model)
        return self._prompt_tokens

    def usd_on(self, provider_type: str, model: str) -> float | None:
        """The estimate's price on `model` of a `provider_type` provider, by the catalog;
        `None` when the catalog does not know the model."""
        entry = self._catalog.lookup(provider_type, model)
        if entry is None:
            return None
        prompt, answer = self.prompt_tokens, self.output_tokens
        return cost_usd(
            entry,
            Usage(prompt_tokens=prompt, completion_tokens=answer, total_tokens=prompt + answer),
        )

    def amounts(self, *, needs_tokens: bool) -> Amounts:
        """What the request reserves. With `needs_tokens` False (no token or cost limit applies)
        it is one request and the prompt is not counted."""
        if not needs_tokens or self.price is None:
            return {"requests": 1.0}
        tokens = self.prompt_tokens + self.output_tokens
        cost = self.usd_on(self.price.provider_type, self.price.model) or 0.0
        return {"requests": 1.0, "tokens": float(tokens), "cost_usd": cost}


class Estimator:
    """Builds each request's `RequestEstimate`; one per app."""

    def __init__(self, tokens: TokenCounter, catalog: Catalog, *, default_reserve: int) -> None:
        self._tokens = tokens
        self._catalog = catalog
        self._default_reserve = default_reserve

    def chat(self, request: ChatRequest, price: PriceKey) -> RequestEstimate:
        """`request`'s prompt plus its answer's ceiling, priced at `price`."""
        answer = request.max_completion_tokens or request.max_tokens or self._default_reserve
        count = partial(self._tokens.count_prompt, request)
        return RequestEstimate(count, answer, price, self._catalog)

    def embeddings(self, request: EmbeddingsRequest, price: PriceKey | None) -> RequestEstimate:
        """An embeddings request's input tokens, no answer; `price` as in `RequestEstimate`."""
        return RequestEstimate(partial(self._input_tokens, request), 0, price, self._catalog)

    def _input_tokens(self, request: EmbeddingsRequest, model: str) -> int:
        texts = request.texts()
        if texts is not None:
            return self._tokens.count_texts(texts, model)
        if isinstance(request.input, list):  # token arrays: their length is the count
            return sum(len(item) if isinstance(item, list) else 1 for item in request.input)
        return 0


def actual_amounts(usage: Usage | None, cost_usd: float) -> Amounts:
    """What a finished request used: every request counts, tokens and cost as reported
    (none for a call that failed before any usage was known)."""
    if usage is None:
        return {"requests": 1.0, "tokens": 0.0, "cost_usd": cost_usd}
    tokens = usage.total_tokens or usage.prompt_tokens + usage.completion_tokens
    return {"requests": 1.0, "tokens": float(tokens), "cost_usd": cost_usd}
