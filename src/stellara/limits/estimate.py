"""What a request will use, estimated before the call: for limits to reserve, for `cost` to rank.

Tokens are the prompt (counted with the model's tokenizer) plus the answer's length: the
request's ceiling (`max_completion_tokens` or `max_tokens`) when it sets one, else what the
answer is expected to use: the length of the caller's recent answers from the same public
model (`OutputHistory`), or `limits.default_max_tokens_reserve` for a caller not seen yet.
The estimate is an upper bound whenever the request sets a ceiling; the settle after the call
replaces it with what the provider reported. What is reserved in a caller's limits, and what
can never fit them, is decided against those limits (`limits.fit`).

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
from stellara.limits.outputs import OutputHistory
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

    The limits stage reserves from it (`limits.fit`), the `cost` strategy reads `usd_on` for
    each target: the prompt is counted once for both, and not at all when neither needs it
    (counting is the expensive part).
    """

    __slots__ = ("_catalog", "_count", "_prompt_tokens", "ceiling_param", "output_tokens", "price")

    def __init__(
        self,
        count: Callable[[str], int],
        output_tokens: int,
        price: PriceKey | None,
        catalog: Catalog,
        *,
        ceiling_param: str | None = None,
    ) -> None:
        """`count(model)` counts the prompt with `model`'s tokenizer. `price` is `None` when no
        target of the model serves the request: it is refused next, so nothing is counted.
        `ceiling_param` names the request's parameter that set `output_tokens` as a ceiling
        (`max_tokens` or `max_completion_tokens`); None when `output_tokens` is only what the
        answer is expected to use, or when there is no answer (embeddings)."""
        self._count = count
        self._prompt_tokens: int | None = None
        self._catalog = catalog
        self.output_tokens = output_tokens
        self.price = price
        self.ceiling_param = ceiling_param

    @property
    def prompt_tokens(self) -> int:
        """The prompt's tokens by the tokenizer of `price`'s model, counted on first use."""
        if self._prompt_tokens is None:
            self._prompt_tokens = 0 if self.price is None else self._count(self.price.model)
        return self._prompt_tokens

    def usd_on(
        self, provider_type: str, model: str, *, output_tokens: int | None = None
    ) -> float | None:
        """The estimate's price on `model` of a `provider_type` provider, by the catalog, with
        `output_tokens` of answer in place of the estimate's own when given; `None` when the
        catalog does not know the model."""
        entry = self._catalog.lookup(provider_type, model)
        if entry is None:
            return None
        prompt = self.prompt_tokens
        answer = self.output_tokens if output_tokens is None else output_tokens
        return cost_usd(
            entry,
            Usage(prompt_tokens=prompt, completion_tokens=answer, total_tokens=prompt + answer),
        )


class Estimator:
    """Builds each request's `RequestEstimate`; one per app."""

    def __init__(
        self,
        tokens: TokenCounter,
        catalog: Catalog,
        *,
        default_reserve: int,
        outputs: OutputHistory | None = None,
    ) -> None:
        """`outputs` holds the callers' recent answer lengths (`Limiter.outputs`); without it,
        or for a caller it has not seen, a request without a ceiling expects `default_reserve`
        tokens of answer."""
        self._tokens = tokens
        self._catalog = catalog
        self._default_reserve = default_reserve
        self._outputs = outputs

    def chat(
        self, request: ChatRequest, price: PriceKey, *, user: str, public_model: str
    ) -> RequestEstimate:
        """`request`'s prompt plus its answer's ceiling, or else the answer `user` is expected
        to get from `public_model`, priced at `price`."""
        count = partial(self._tokens.count_prompt, request)
        catalog = self._catalog
        if request.max_completion_tokens:
            ceiling = request.max_completion_tokens
            return RequestEstimate(
                count, ceiling, price, catalog, ceiling_param="max_completion_tokens"
            )
        if request.max_tokens:
            return RequestEstimate(
                count, request.max_tokens, price, catalog, ceiling_param="max_tokens"
            )
        expected = self._outputs.expected(user, public_model) if self._outputs else None
        answer = self._default_reserve if expected is None else expected
        return RequestEstimate(count, answer, price, catalog)

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
