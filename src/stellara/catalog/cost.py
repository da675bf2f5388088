"""The price of one call: catalog rates times the token counts the provider reported.

Pure arithmetic, no lookup: the caller has already found the entry, so tests and the quota
stage can price any usage without a catalog.
"""

from __future__ import annotations

from stellara.catalog.models import CatalogEntry
from stellara.schema.chat import Usage

_PER_MTOK = 1_000_000


def cost_usd(entry: CatalogEntry, usage: Usage) -> float:
    """The USD cost of `usage` at `entry`'s rates.

    `prompt_tokens` includes the cached ones (OpenAI's convention, which the canonical `Usage`
    follows), so cached tokens are taken out of the full-price share and billed at the cached
    rate. Reasoning tokens are part of `completion_tokens` and billed as output. A prompt above
    the entry's long-context threshold bills every token of the call at the long-context rates,
    as Google and Anthropic do.
    """
    prompt = max(usage.prompt_tokens, 0)
    details = usage.prompt_tokens_details
    cached = min(max(details.cached_tokens or 0, 0), prompt) if details is not None else 0
    completion = max(usage.completion_tokens, 0)
    input_rate = entry.input_per_mtok
    cached_rate = entry.cached_input_per_mtok
    output_rate = entry.output_per_mtok
    tier = entry.long_context
    if tier is not None and prompt > tier.above_prompt_tokens:
        input_rate = tier.input_per_mtok
        cached_rate = tier.cached_input_per_mtok
        output_rate = tier.output_per_mtok
    total = (prompt - cached) * input_rate + cached * cached_rate + completion * output_rate
    return total / _PER_MTOK
