"""`Catalog`: finds the entry for a provider type and model, shipped data plus config overrides.

A model name resolves to an entry in this order, trying the name as given first and then with
each dated-snapshot suffix removed (`claude-3-5-sonnet-20241022` → `claude-3-5-sonnet`):
a config entry for that provider type, a config entry without a type, then the shipped entry
(by id or alias). A snapshot listed in the data itself (`gpt-4o-2024-05-13`, priced apart from
`gpt-4o`) therefore wins over its family.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import TypeVar

from stellara.catalog.cost import cost_usd
from stellara.catalog.models import CatalogEntry, load_shipped_entries
from stellara.config.models import CatalogEntryConfig, StellaraConfig
from stellara.schema.chat import Usage

# One trailing version marker: a date (`-20241022`, `-2024-08-06`), an OpenAI or Gemini revision
# (`-0613`, `-001`), `-latest`, or a preview/experimental tag with its own date
# (`-preview-05-20`, `-exp-0827`).
_SNAPSHOT_SUFFIX = re.compile(
    r"-(?:\d{8}|\d{4}-\d{2}-\d{2}|\d{3,4}|latest|(?:preview|exp)(?:-[0-9a-z]+)*)$"
)
# Lookups are memoised per catalog; model names come from the config, so the set is small, but
# a cap keeps a misbehaving caller from growing it without bound.
_MEMO_LIMIT = 4096
_T = TypeVar("_T")


class Catalog:
    """Model limits, prices and capabilities; built once per app by `create_app`.

    Use `lookup` when a stage needs a model's limits or capabilities, `cost_usd` to price a
    finished call from the usage the provider reported.
    """

    def __init__(
        self, entries: Iterable[CatalogEntry], overrides: Iterable[CatalogEntryConfig] = ()
    ) -> None:
        self._entries = tuple(entries)
        self._shipped: dict[tuple[str, str], CatalogEntry] = {}
        for entry in self._entries:
            for name in (entry.model, *entry.aliases):
                self._shipped[(entry.provider_type, name.lower())] = entry
        self._overrides: dict[tuple[str | None, str], CatalogEntryConfig] = {
            (o.provider_type, o.provider_model.lower()): o for o in overrides
        }
        self._memo: dict[tuple[str, str], CatalogEntry | None] = {}

    @classmethod
    def shipped(cls, overrides: Iterable[CatalogEntryConfig] = ()) -> Catalog:
        """The catalog shipped with the package, with `overrides` applied."""
        return cls(load_shipped_entries(), overrides)

    @classmethod
    def from_config(cls, config: StellaraConfig) -> Catalog:
        """The shipped catalog with the config's `catalog:` section applied."""
        return cls.shipped(config.catalog)

    @property
    def entries(self) -> tuple[CatalogEntry, ...]:
        """The shipped entries, without config overrides."""
        return self._entries

    def lookup(self, provider_type: str, model: str) -> CatalogEntry | None:
        """The entry for `model` on a provider of `provider_type`, or `None` if unknown."""
        key = (provider_type, model)
        if key in self._memo:
            return self._memo[key]
        found = self._resolve(provider_type, model)
        if len(self._memo) < _MEMO_LIMIT:
            self._memo[key] = found
        return found

    def cost_usd(self, provider_type: str, model: str, usage: Usage | None) -> float:
        """What a call cost by the catalog's prices; 0.0 for an unknown model or no usage.

        An unknown model (a local OpenAI-compatible server, say) is free rather than an error:
        the operator prices it with a `catalog:` entry when it is not.
        """
        entry = self.lookup(provider_type, model)
        if entry is None or usage is None:
            return 0.0
        return cost_usd(entry, usage)

    def _resolve(self, provider_type: str, model: str) -> CatalogEntry | None:
        for name in _candidates(model):
            base = self._shipped.get((provider_type, name))
            override = self._override(provider_type, name)
            if override is None and base is not None:
                override = self._override(provider_type, base.model.lower())
            if override is not None:
                return _apply(override, base, provider_type)
            if base is not None:
                return base
        return None

    def _override(self, provider_type: str, name: str) -> CatalogEntryConfig | None:
        return self._overrides.get((provider_type, name)) or self._overrides.get((None, name))


def _candidates(model: str) -> Iterator[str]:
    """`model`, then `model` without each trailing snapshot marker in turn."""
    name = model.strip().lower()
    while name:
        yield name
        shorter = _SNAPSHOT_SUFFIX.sub("", name)
        if shorter == name:
            return
        name = shorter


def _apply(
    override: CatalogEntryConfig, base: CatalogEntry | None, provider_type: str
) -> CatalogEntry:
    """The entry `override` describes, with what it leaves out taken from `base`."""
    if base is None:
        return CatalogEntry(
            provider_type=provider_type,
            model=override.provider_model,
            input_per_mtok=override.input_per_mtok,
            output_per_mtok=override.output_per_mtok,
            cached_input_per_mtok=_or(override.cached_input_per_mtok, override.input_per_mtok),
            cache_write_per_mtok=override.cache_write_per_mtok,
            context_window=override.context_window,
            max_output_tokens=override.max_output_tokens,
            capabilities=frozenset(override.capabilities or ()),
        )
    # Keep the provider's cache discount (and write surcharge) when only the list price is
    # overridden.
    ratio = base.cached_input_per_mtok / base.input_per_mtok if base.input_per_mtok else 1.0
    write = override.cache_write_per_mtok
    if write is None and base.cache_write_per_mtok is not None and base.input_per_mtok:
        write = override.input_per_mtok * base.cache_write_per_mtok / base.input_per_mtok
    return replace(
        base,
        input_per_mtok=override.input_per_mtok,
        output_per_mtok=override.output_per_mtok,
        cached_input_per_mtok=_or(override.cached_input_per_mtok, override.input_per_mtok * ratio),
        cache_write_per_mtok=write,
        context_window=_or(override.context_window, base.context_window),
        max_output_tokens=_or(override.max_output_tokens, base.max_output_tokens),
        capabilities=(
            frozenset(override.capabilities)
            if override.capabilities is not None
            else base.capabilities
        ),
        # A config price is flat: the shipped long-prompt tier belonged to the shipped price.
        long_context=None,
    )


def _or(value: _T | None, default: _T) -> _T:
    return default if value is None else value
