"""What a request will use, estimated before the call so limits can reserve it.

Tokens are the prompt (counted with the model's tokenizer) plus the answer's ceiling: the
request's `max_completion_tokens` or `max_tokens`, else `limits.default_max_tokens_reserve`.
The estimate is an upper bound whenever the request sets a ceiling; the settle after the call
replaces it with what the provider reported.

Limits run before routing, so the provider that will answer is not known yet. The estimate
prices the public model's first target, the one a healthy route uses; a fallback to a
pricier target is corrected by the settle.
"""

from __future__ import annotations

from dataclasses import dataclass

from stellara.catalog import Catalog
from stellara.schema.chat import ChatRequest, Usage
from stellara.schema.embeddings import EmbeddingsRequest
from stellara.state.base import Amounts
from stellara.tokens import TokenCounter


@dataclass(frozen=True, slots=True)
class PriceKey:
    """The provider type and model whose prices and tokenizer an estimate uses."""

    provider_type: str
    model: str


class Estimator:
    """Turns requests into the amounts they reserve; built once per app."""

    def __init__(self, tokens: TokenCounter, catalog: Catalog, *, default_reserve: int) -> None:
        self._tokens = tokens
        self._catalog = catalog
        self._default_reserve = default_reserve

    def chat(self, request: ChatRequest, price: PriceKey, *, needs_tokens: bool) -> Amounts:
        """The amounts `request` reserves. With `needs_tokens` False (no token or cost limit
        applies) the prompt is not tokenized at all: that is the expensive part."""
        if not needs_tokens:
            return {"requests": 1.0}
        prompt = self._tokens.count_prompt(request, price.model)
        answer = request.max_completion_tokens or request.max_tokens or self._default_reserve
        usage = Usage(prompt_tokens=prompt, completion_tokens=answer, total_tokens=prompt + answer)
        cost = self._catalog.cost_usd(price.provider_type, price.model, usage)
        return {"requests": 1.0, "tokens": float(prompt + answer), "cost_usd": cost}

    def embeddings(
        self, request: EmbeddingsRequest, price: PriceKey, *, needs_tokens: bool
    ) -> Amounts:
        """The amounts an embeddings request reserves: its input tokens, no answer."""
        if not needs_tokens:
            return {"requests": 1.0}
        texts = request.texts()
        if texts is not None:
            prompt = sum(self._tokens.count_text(text, price.model) for text in texts)
        elif isinstance(request.input, list):  # token arrays: their length is the count
            prompt = sum(len(item) if isinstance(item, list) else 1 for item in request.input)
        else:
            prompt = 0
        usage = Usage(prompt_tokens=prompt, total_tokens=prompt)
        cost = self._catalog.cost_usd(price.provider_type, price.model, usage)
        return {"requests": 1.0, "tokens": float(prompt), "cost_usd": cost}


def actual_amounts(usage: Usage | None, cost_usd: float) -> Amounts:
    """What a finished request used: every request counts, tokens and cost as reported
    (none for a call that failed before any usage was known)."""
    if usage is None:
        return {"requests": 1.0, "tokens": 0.0, "cost_usd": cost_usd}
    tokens = usage.total_tokens or usage.prompt_tokens + usage.completion_tokens
    return {"requests": 1.0, "tokens": float(tokens), "cost_usd": cost_usd}
