"""The Azure OpenAI adapter: the OpenAI adapter with Azure's URL and authentication."""

from __future__ import annotations

from urllib.parse import quote

from pydantic import Field

from stellara.config.models import ProviderSettings
from stellara.providers.base import ProviderAdapter
from stellara.providers.openai.api import OpenAIAdapter


class AzureSettings(ProviderSettings):
    """`type: azure`. `base_url` is the resource root, e.g. `https://x.openai.azure.com`.

    `deployments` maps the model names used in `models:` targets to deployment names; a model
    without an entry is taken to be deployed under its own name.
    """

    base_url: str
    api_version: str = Field(min_length=1)
    deployments: dict[str, str] = Field(default_factory=dict)


class AzureAdapter(OpenAIAdapter):
    """`POST {base}/openai/deployments/{deployment}/chat/completions?api-version=…`."""

    def __init__(self, settings: AzureSettings) -> None:
        self._deployments = dict(settings.deployments)
        self._api_version = quote(settings.api_version, safe="")
        super().__init__(settings)

    def _auth_headers(self, settings: ProviderSettings) -> dict[str, str]:
        if settings.api_key is None:
            return {}
        return {"api-key": settings.api_key.get_secret_value()}

    def _wire_model(self, model: str) -> str:
        # Like the AzureOpenAI SDK, the body names the deployment the URL addresses.
        return self._deployments.get(model, model)

    def _url_for(self, operation: str, model: str) -> str:
        deployment = quote(self._wire_model(model), safe="")
        return (
            f"{self._base_url}/openai/deployments/{deployment}/{operation}"
            f"?api-version={self._api_version}"
        )


def create_adapter(settings: ProviderSettings) -> ProviderAdapter:
    if not isinstance(settings, AzureSettings):
        raise TypeError(f"expected AzureSettings, got {type(settings).__name__}")
    return AzureAdapter(settings)
