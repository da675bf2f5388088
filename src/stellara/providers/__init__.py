"""The provider registry: every provider type Stellara can talk to, by its config `type`.

Adding a provider touches its own folder and one line here; nothing else names it.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from stellara.config.models import ProviderSettings
from stellara.providers import anthropic, azure, google, openai
from stellara.providers.base import ProviderAdapter, ProviderType

_TYPES: Mapping[str, ProviderType] = MappingProxyType(
    {
        "openai": openai.PROVIDER_TYPE,
        "anthropic": anthropic.PROVIDER_TYPE,
        "google": google.PROVIDER_TYPE,
        "azure": azure.PROVIDER_TYPE,
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
    "ProviderType",
    "create_adapter",
    "provider_types",
]
