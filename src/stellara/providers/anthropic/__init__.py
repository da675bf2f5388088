"""Anthropic's Messages API wire format: `type: anthropic`, `base_url` the host root."""

from typing import Any

from stellara.providers.anthropic.api import AnthropicAdapter, AnthropicSettings, create_adapter
from stellara.providers.anthropic.params import PARAMS
from stellara.providers.base import ProviderType


def _sim_entry(sim_url: str) -> dict[str, Any]:
    return {"type": "anthropic", "base_url": sim_url, "api_key": "sim-key"}


PROVIDER_TYPE = ProviderType(
    AnthropicSettings, create_adapter, _sim_entry, "claude-3-5-haiku-latest", PARAMS
)

__all__ = ["PROVIDER_TYPE", "AnthropicAdapter", "AnthropicSettings", "create_adapter"]
