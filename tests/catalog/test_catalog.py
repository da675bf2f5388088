"""The shipped catalog, name resolution, config overrides and the cost arithmetic."""

from __future__ import annotations

from typing import get_args

import pytest

from stellara.assembly.config import check_config
from stellara.catalog import Capability, Catalog, CatalogEntry, cost_usd
from stellara.catalog.models import load_shipped_entries
from stellara.config.models import CatalogEntryConfig
from stellara.errors import ConfigError
from stellara.schema.chat import PromptTokensDetails, Usage

PROVIDER_TYPES = {"openai", "azure", "anthropic", "google"}


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.shipped()


def _model(catalog: Catalog, provider_type: str, model: str) -> str | None:
    entry = catalog.lookup(provider_type, model)
    return None if entry is None else entry.model


def test_catalog_shipped_entries_have_sane_numbers(catalog: Catalog) -> None:
    assert catalog.entries
    for entry in catalog.entries:
        where = f"{entry.provider_type}/{entry.model}"
        assert entry.context_window is not None
        assert entry.max_output_tokens is not None
        assert 1000 <= entry.context_window <= 10_000_000, where
        assert 0 < entry.input_per_mtok <= 100, where
        assert 0 < entry.cached_input_per_mtok <= entry.input_per_mtok, where
        if entry.supports("embeddings"):
            assert entry.output_per_mtok == 0, where
            assert entry.max_output_tokens == 0, where
        else:
            assert entry.input_per_mtok <= entry.output_per_mtok <= 200, where
            assert 0 < entry.max_output_tokens <= entry.context_window, where
        if entry.long_context is not None:
            # `<=`: Claude Sonnet 4.x reaches its long-context tier only with the 1M-context beta.
            assert entry.long_context.above_prompt_tokens <= entry.context_window, where
            assert entry.long_context.input_per_mtok > entry.input_per_mtok, where
            assert entry.long_context.output_per_mtok >= entry.output_per_mtok, where


def test_catalog_shipped_covers_four_provider_types(catalog: Catalog) -> None:
    assert {entry.provider_type for entry in catalog.entries} == PROVIDER_TYPES


@pytest.mark.parametrize(
    ("provider_type", "model"),
    [
        # the seed's model families
        ("openai", "gpt-3.5-turbo"),
        ("openai", "gpt-4"),
        ("openai", "gpt-4-turbo"),
        ("anthropic", "claude-3-haiku-20240307"),
        ("anthropic", "claude-3-sonnet-20240229"),
        ("anthropic", "claude-3-opus-20240229"),
        ("google", "gemini-pro"),
        ("google", "gemini-1.5-pro"),
        ("google", "gemini-1.5-flash"),
        # current ones
        ("openai", "gpt-4o"),
        ("openai", "gpt-4o-mini"),
        ("openai", "gpt-4.1"),
        ("openai", "o1"),
        ("openai", "o3"),
        ("openai", "o4-mini"),
        ("openai", "gpt-5"),
        ("azure", "gpt-4o"),
        ("anthropic", "claude-3-5-sonnet-latest"),
        ("anthropic", "claude-3-7-sonnet-latest"),
        ("anthropic", "claude-sonnet-4-5"),
        ("anthropic", "claude-opus-4-1"),
        ("anthropic", "claude-haiku-4-5"),
        ("google", "gemini-2.0-flash"),
        ("google", "gemini-2.5-pro"),
        ("google", "gemini-2.5-flash"),
    ],
)
def test_catalog_covers_seed_and_current_models(
    catalog: Catalog, provider_type: str, model: str
) -> None:
    assert catalog.lookup(provider_type, model) is not None


@pytest.mark.parametrize(
    ("provider_type", "model", "expected"),
    [
        ("openai", "gpt-4o-2024-08-06", "gpt-4o"),
        ("openai", "gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("openai", "gpt-4-0613", "gpt-4"),
        ("openai", "gpt-4-32k-0613", "gpt-4-32k"),
        ("openai", "gpt-3.5-turbo-0125", "gpt-3.5-turbo"),
        ("openai", "gpt-4-0125-preview", "gpt-4-turbo"),
        ("openai", "gpt-4-turbo-2024-04-09", "gpt-4-turbo"),
        ("openai", "o3-mini-2025-01-31", "o3-mini"),
        ("openai", "GPT-4o", "gpt-4o"),
        ("anthropic", "claude-3-5-sonnet-20241022", "claude-3-5-sonnet"),
        ("anthropic", "claude-sonnet-4-20250514", "claude-sonnet-4-0"),
        ("anthropic", "claude-opus-4-1-20250805", "claude-opus-4-1"),
        ("google", "gemini-1.5-pro-002", "gemini-1.5-pro"),
        ("google", "gemini-2.5-flash-preview-05-20", "gemini-2.5-flash"),
        ("google", "gemini-1.5-flash-8b-001", "gemini-1.5-flash-8b"),
    ],
)
def test_catalog_lookup_resolves_snapshots_and_aliases(
    catalog: Catalog, provider_type: str, model: str, expected: str
) -> None:
    assert _model(catalog, provider_type, model) == expected


def test_catalog_lookup_prefers_a_listed_snapshot_over_its_family(catalog: Catalog) -> None:
    old = catalog.lookup("openai", "gpt-4o-2024-05-13")
    assert old is not None
    assert old.model == "gpt-4o-2024-05-13"
    assert old.input_per_mtok == 5.00


def test_catalog_lookup_never_confuses_families(catalog: Catalog) -> None:
    # gpt-4 must not swallow gpt-4o or gpt-4.1, nor gpt-4o gpt-4o-mini.
    assert _model(catalog, "openai", "gpt-4o-mini") == "gpt-4o-mini"
    assert _model(catalog, "openai", "gpt-4.1-nano") == "gpt-4.1-nano"
    assert catalog.lookup("openai", "gpt-4o-nonsense") is None
    assert catalog.lookup("openai", "llama-3.1-8b-instruct") is None


def test_catalog_lookup_is_per_provider_type(catalog: Catalog) -> None:
    assert catalog.lookup("anthropic", "gpt-4o") is None
    assert catalog.lookup("google", "claude-3-haiku") is None
    azure = catalog.lookup("azure", "gpt-4o-2024-11-20")
    assert azure is not None
    assert azure.provider_type == "azure"
    assert azure.input_per_mtok == 2.50


def test_catalog_config_override_keeps_unspecified_fields() -> None:
    override = CatalogEntryConfig(provider_model="gpt-4o", input_per_mtok=2.0, output_per_mtok=8.0)
    entry = Catalog.shipped([override]).lookup("openai", "gpt-4o-2024-08-06")
    assert entry is not None
    assert (entry.input_per_mtok, entry.output_per_mtok) == (2.0, 8.0)
    assert entry.cached_input_per_mtok == pytest.approx(1.0)  # the shipped 50% cache discount
    assert entry.context_window == 128000
    assert entry.supports("vision")


def test_catalog_config_override_by_type_wins_over_untyped() -> None:
    overrides = [
        CatalogEntryConfig(provider_model="gpt-4o", input_per_mtok=1.0, output_per_mtok=1.0),
        CatalogEntryConfig(
            provider_model="gpt-4o", provider_type="azure", input_per_mtok=3.0, output_per_mtok=12.0
        ),
    ]
    catalog = Catalog.shipped(overrides)
    azure = catalog.lookup("azure", "gpt-4o")
    openai = catalog.lookup("openai", "chatgpt-4o-latest")
    assert azure is not None
    assert openai is not None
    assert azure.input_per_mtok == 3.0
    assert openai.input_per_mtok == 1.0


def test_catalog_config_adds_a_model() -> None:
    added = CatalogEntryConfig(
        provider_model="llama-3.1-8b",
        input_per_mtok=0.05,
        output_per_mtok=0.08,
        context_window=131072,
        capabilities=["tools"],
    )
    entry = Catalog.shipped([added]).lookup("openai", "llama-3.1-8b")
    assert entry == CatalogEntry(
        provider_type="openai",
        model="llama-3.1-8b",
        input_per_mtok=0.05,
        output_per_mtok=0.08,
        cached_input_per_mtok=0.05,
        context_window=131072,
        max_output_tokens=None,
        capabilities=frozenset({"tools"}),
    )


def test_catalog_from_config_reads_the_catalog_section() -> None:
    config = check_config(
        {"catalog": [{"provider_model": "gpt-4o", "input_per_mtok": 2.5, "output_per_mtok": 10}]}
    )
    entry = Catalog.from_config(config).lookup("openai", "gpt-4o")
    assert entry is not None
    assert entry.output_per_mtok == 10


def test_catalog_config_section_rejects_unknown_keys_and_negative_prices() -> None:
    with pytest.raises(ConfigError) as caught:
        check_config(
            {
                "catalog": [
                    {"provider_model": "x", "input_per_mtok": -1, "output_per_mtok": 1},
                    {"provider_model": "y", "input_per_mtok": 1, "output_per_mtok": 1, "oops": 1},
                ]
            }
        )
    problems = caught.value.problems
    assert any(p.startswith("catalog[0].input_per_mtok") for p in problems)
    assert "catalog[1].oops: unknown key" in problems


def test_catalog_config_capabilities_match_catalog_capabilities() -> None:
    field = CatalogEntryConfig.model_fields["capabilities"].annotation
    (listed,) = (arg for arg in get_args(field) if arg is not type(None))
    (literal,) = get_args(listed)
    assert set(get_args(literal)) == set(get_args(Capability))


def test_catalog_bad_data_file_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        load_shipped_entries("providers: {openai: {models: [{model: x}]}}")


def test_cost_usd_with_cached_tokens_for_gpt_4o(catalog: Catalog) -> None:
    entry = catalog.lookup("openai", "gpt-4o")
    assert entry is not None
    usage = Usage(
        prompt_tokens=10_000,
        completion_tokens=2_000,
        total_tokens=12_000,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=4_000),
    )
    # 6,000 uncached x $2.50 + 4,000 cached x $1.25 + 2,000 out x $10.00, per million.
    assert cost_usd(entry, usage) == pytest.approx(0.015 + 0.005 + 0.020)


def test_cost_usd_without_details_bills_all_prompt_tokens(catalog: Catalog) -> None:
    entry = catalog.lookup("anthropic", "claude-3-haiku-20240307")
    assert entry is not None
    usage = Usage(prompt_tokens=1_000_000, completion_tokens=1_000_000)
    assert cost_usd(entry, usage) == pytest.approx(0.25 + 1.25)


def test_cost_usd_long_prompt_uses_long_context_rates(catalog: Catalog) -> None:
    entry = catalog.lookup("google", "gemini-2.5-pro")
    assert entry is not None
    short = Usage(prompt_tokens=200_000, completion_tokens=1_000)
    long = Usage(prompt_tokens=200_001, completion_tokens=1_000)
    assert cost_usd(entry, short) == pytest.approx((200_000 * 1.25 + 1_000 * 10.0) / 1e6)
    assert cost_usd(entry, long) == pytest.approx((200_001 * 2.50 + 1_000 * 15.0) / 1e6)


def test_cost_usd_clamps_inconsistent_cached_counts(catalog: Catalog) -> None:
    entry = catalog.lookup("openai", "gpt-4o-mini")
    assert entry is not None
    usage = Usage(
        prompt_tokens=100, completion_tokens=0, prompt_tokens_details=PromptTokensDetails(500)
    )
    assert cost_usd(entry, usage) == pytest.approx(100 * 0.075 / 1e6)


def test_catalog_cost_usd_unknown_model_or_no_usage_is_free(catalog: Catalog) -> None:
    assert catalog.cost_usd("openai", "my-local-model", Usage(prompt_tokens=10)) == 0.0
    assert catalog.cost_usd("openai", "gpt-4o", None) == 0.0
    assert catalog.cost_usd("openai", "gpt-4o", Usage(prompt_tokens=1_000_000)) == 2.5


def test_cost_usd_bills_anthropic_cache_writes_at_the_write_rate(catalog: Catalog) -> None:
    entry = catalog.lookup("anthropic", "claude-sonnet-4-5")
    assert entry is not None
    usage = Usage(
        prompt_tokens=10_000,
        completion_tokens=1_000,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=6_000, cache_write_tokens=3_000),
    )
    # 1,000 input x $3 + 6,000 read x $0.30 + 3,000 written x $3.75 + 1,000 out x $15.
    assert cost_usd(entry, usage) == pytest.approx((3_000 + 1_800 + 11_250 + 15_000) / 1e6)
    long = Usage(
        prompt_tokens=300_000,
        prompt_tokens_details=PromptTokensDetails(cache_write_tokens=200_000),
    )
    # Above 200k the long-context rates apply to writes too: $6 input, $7.50 written.
    assert cost_usd(entry, long) == pytest.approx((100_000 * 6.0 + 200_000 * 7.5) / 1e6)


def test_cost_usd_bills_writes_as_input_where_the_provider_charges_no_more(
    catalog: Catalog,
) -> None:
    entry = catalog.lookup("openai", "gpt-4o")
    assert entry is not None
    assert entry.cache_write_per_mtok is None
    usage = Usage(
        prompt_tokens=1_000, prompt_tokens_details=PromptTokensDetails(cache_write_tokens=400)
    )
    assert cost_usd(entry, usage) == pytest.approx(1_000 * 2.5 / 1e6)
    # Counts that cannot be (more written than the uncached prompt) are clamped, never negative.
    odd = Usage(
        prompt_tokens=100,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=80, cache_write_tokens=500),
    )
    sonnet = catalog.lookup("anthropic", "claude-sonnet-4-5")
    assert sonnet is not None
    assert cost_usd(sonnet, odd) == pytest.approx((80 * 0.30 + 20 * 3.75) / 1e6)


def test_catalog_config_override_keeps_the_cache_write_surcharge() -> None:
    overrides = [
        CatalogEntryConfig(
            provider_model="claude-haiku-4-5", input_per_mtok=2.0, output_per_mtok=8
        ),
        CatalogEntryConfig(
            provider_model="my-claude",
            input_per_mtok=2.0,
            output_per_mtok=8,
            cache_write_per_mtok=3,
        ),
        CatalogEntryConfig(provider_model="my-local", input_per_mtok=2.0, output_per_mtok=8),
    ]
    catalog = Catalog.shipped(overrides)
    haiku = catalog.lookup("anthropic", "claude-haiku-4-5")
    assert haiku is not None
    assert haiku.cache_write_per_mtok == pytest.approx(2.5)
    mine = catalog.lookup("anthropic", "my-claude")
    assert mine is not None
    assert mine.cache_write_per_mtok == 3
    local = catalog.lookup("openai", "my-local")
    assert local is not None
    assert local.cache_write_per_mtok is None
