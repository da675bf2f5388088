"""Azure OpenAI: OpenAI's wire schema under a deployment URL, with an `api-key` header."""

from typing import Any

from stellara.providers.azure.api import AzureAdapter, AzureSettings, create_adapter
from stellara.providers.azure.params import EMBEDDING_PARAMS, PARAMS
from stellara.providers.base import ProviderType


def _sim_entry(sim_url: str) -> dict[str, Any]:
    return {
        "type": "azure",
        "base_url": sim_url,
        "api_key": "sim-key",
        "api_version": "2024-10-21",
    }


PROVIDER_TYPE = ProviderType(
    AzureSettings, create_adapter, _sim_entry, "gpt-4o", PARAMS, EMBEDDING_PARAMS
)

__all__ = ["PROVIDER_TYPE", "AzureAdapter", "AzureSettings", "create_adapter"]
