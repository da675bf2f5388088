"""Google's Gemini API wire format (`generateContent`): `type: google`."""

from typing import Any

from stellara.providers.base import ProviderType
from stellara.providers.google.api import GoogleAdapter, GoogleSettings, create_adapter
from stellara.providers.google.params import EMBEDDING_PARAMS, PARAMS


def _sim_entry(sim_url: str) -> dict[str, Any]:
    return {"type": "google", "base_url": sim_url, "api_key": "sim-key"}


PROVIDER_TYPE = ProviderType(
    GoogleSettings, create_adapter, _sim_entry, "gemini-2.0-flash", PARAMS, EMBEDDING_PARAMS
)

__all__ = ["PROVIDER_TYPE", "GoogleAdapter", "GoogleSettings", "create_adapter"]
