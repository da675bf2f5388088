"""The price of one call: catalog rates times the token counts the provider reported.

Pure arithmetic, no lookup: the caller has already found the entry, so tests and the quota
stage can price any usage without a catalog.
"""

from __future__ import annotations

from stellara.catalog.models import CatalogEntry, LongContextPrices
from stellara.schema.chat import Usage

_PER_MTOK = 1_000_000


def cost_usd(entry: CatalogEntry, usage: Usage) -> float:
    """The USD cost of `usage` at `entry`'s rates.

    `prompt_tokens` includes the cached ones and those written to the cache (OpenAI's
    convention, which the canonical `Usage` follows), so both are taken out of the full-price
    share: cached tokens are billed at the cached rate, written ones at the cache-write rate
    where the provider charges one (else as input). Reasoning tokens are part of
    `completion_tokens` and billed as output. A prompt above the entry's long-context threshold
    bills every token of the call at the long-context rates, as Google and Anthropic do.
    """
    prompt = max(usage.prompt_tokens, 0)
    details = usage.prompt_tokens_details
    cached = written = 0
    if details is not None:
        cached = min(max(details.cached_tokens or 0, 0), prompt)
        written = min(max(details.cache_write_tokens or 0, 0), prompt - cached)
    completion = max(usage.completion_tokens, 0)
    rates: CatalogEntry | LongContextPrices = entry
    tier = entry.long_context
    if tier is not None and prompt > tier.above_prompt_tokens:
        rates = tier
    input_rate = rates.input_per_mtok
    write_rate = rates.cache_write_per_mtok
    total = (
        (prompt - cached - written) * input_rate
        + cached * rates.cached_input_per_mtok
        + written * (input_rate if write_rate is None else write_rate)
        + completion * rates.output_per_mtok
    )
    return total / _PER_MTOK
