"""Typed catalog entries, and the reader of the data file shipped with the package.

`data.yaml` is validated by the pydantic models here when a `Catalog` is built, so a bad edit
to the file fails the test suite (and start-up) with the path of the bad field, never a wrong
price at run time. Entries are frozen dataclasses: they sit on the accounting path of every
request and are shared by every request.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from stellara.errors import ConfigError

Capability = Literal["tools", "vision", "json_mode", "embeddings"]
"""What a model can be asked for. Chat is implied by the absence of `embeddings`."""

DATA_FILE = "data.yaml"


@dataclass(frozen=True, slots=True)
class LongContextPrices:
    """Higher rates a provider charges for every token of a request with a long prompt."""

    above_prompt_tokens: int
    input_per_mtok: float
    cached_input_per_mtok: float
    output_per_mtok: float
    cache_write_per_mtok: float | None = None


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """Limits, prices (USD per million tokens) and capabilities of one provider model.

    `cache_write_per_mtok` is what a prompt token written to the provider's cache costs, for
    providers that charge more for it than for input (Anthropic, for its five-minute cache);
    `None` bills writes as input.

    `context_window` and `max_output_tokens` are `None` only for models a config added without
    giving them: limits checks skip what they do not know rather than guess.
    """

    provider_type: str
    model: str
    input_per_mtok: float
    output_per_mtok: float
    cached_input_per_mtok: float
    cache_write_per_mtok: float | None = None
    context_window: int | None = None
    max_output_tokens: int | None = None
    capabilities: frozenset[Capability] = frozenset()
    aliases: tuple[str, ...] = ()
    long_context: LongContextPrices | None = None

    def supports(self, capability: Capability) -> bool:
        """Whether requests that need `capability` may go to this model."""
        return capability in self.capabilities


# ---------------------------------------------------------------- the shipped data file


class _StrictData(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _LongContextData(_StrictData):
    above_prompt_tokens: int = Field(gt=0)
    input_per_mtok: float = Field(ge=0)
    cached_input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)
    cache_write_per_mtok: float | None = Field(default=None, ge=0)


class _ModelData(_StrictData):
    model: str = Field(min_length=1)
    aliases: list[str] = Field(default_factory=list)
    context_window: int = Field(gt=0)
    max_output_tokens: int = Field(ge=0)
    input_per_mtok: float = Field(ge=0)
    cached_input_per_mtok: float = Field(ge=0)
    cache_write_per_mtok: float | None = Field(default=None, ge=0)
    output_per_mtok: float = Field(ge=0)
    capabilities: list[Capability]
    long_context: _LongContextData | None = None


class _ProviderData(_StrictData):
    models: list[_ModelData] = Field(default_factory=list)
    same_as: str | None = None


class _CatalogData(_StrictData):
    providers: dict[str, _ProviderData]


def load_shipped_entries(text: str | None = None) -> list[CatalogEntry]:
    """Parse the catalog data file (the packaged `data.yaml` unless `text` is given).

    Raises:
        ConfigError: the file is not valid YAML or does not match the schema above.
    """
    if text is None:
        text = resources.files(__package__).joinpath(DATA_FILE).read_text(encoding="utf-8")
    try:
        data = _CatalogData.model_validate(yaml.load(text, Loader=_YAML_LOADER))
    except (yaml.YAMLError, ValidationError) as exc:
        raise ConfigError([f"catalog {DATA_FILE}: {exc}"]) from exc
    entries: list[CatalogEntry] = []
    for provider_type, provider in data.providers.items():
        source = provider
        if provider.same_as is not None:
            source = data.providers.get(provider.same_as, _ProviderData())
            if source.same_as is not None or provider.models:
                raise ConfigError([f"catalog {DATA_FILE}: {provider_type}: bad same_as"])
        entries.extend(_entry(provider_type, item) for item in source.models)
    return entries


def _entry(provider_type: str, item: _ModelData) -> CatalogEntry:
    long_context = None
    if item.long_context is not None:
        lc = item.long_context
        long_context = LongContextPrices(
            lc.above_prompt_tokens,
            lc.input_per_mtok,
            lc.cached_input_per_mtok,
            lc.output_per_mtok,
            lc.cache_write_per_mtok,
        )
    return CatalogEntry(
        provider_type=provider_type,
        model=item.model,
        input_per_mtok=item.input_per_mtok,
        output_per_mtok=item.output_per_mtok,
        cached_input_per_mtok=item.cached_input_per_mtok,
        cache_write_per_mtok=item.cache_write_per_mtok,
        context_window=item.context_window,
        max_output_tokens=item.max_output_tokens,
        capabilities=frozenset(item.capabilities),
        aliases=tuple(item.aliases),
        long_context=long_context,
    )


# libyaml's loader parses the file several times faster than the pure-Python one; both are safe.
_YAML_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
