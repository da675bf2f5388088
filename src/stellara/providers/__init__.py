"""The provider registry: every provider type Stellara can talk to, by its config `type`.

Adding a provider touches its own folder and one line here; nothing else names it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import NamedTuple

from stellara.providers import azure, openai
from stellara.providers.base import ProviderAdapter, ProviderSettings


class ProviderType(NamedTuple):
    """How to validate a provider entry of one `type` and build its adapter."""

    settings_model: type[ProviderSettings]
    create: Callable[[ProviderSettings], ProviderAdapter]


_TYPES: Mapping[str, ProviderType] = MappingProxyType(
    {
        "openai": ProviderType(openai.OpenAISettings, openai.create_adapter),
        "azure": ProviderType(azure.AzureSettings, azure.create_adapter),
    }
)


def provider_types() -> Mapping[str, ProviderType]:
    """The registered provider types, by config `type`."""
    return _TYPES


def create_adapter(settings: ProviderSettings) -> ProviderAdapter:
    """Build the adapter for one configured provider entry."""
    return _TYPES[settings.type].create(settings)


__all__ = [
    "ProviderAdapter",
    "ProviderSettings",
    "ProviderType",
    "create_adapter",
    "provider_types",
]
