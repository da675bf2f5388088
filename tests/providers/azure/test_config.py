"""Azure provider entries in the config file."""

from __future__ import annotations

import pytest

from stellara.assembly.config import parse_config
from stellara.errors import ConfigError
from stellara.providers.azure import AzureSettings


def test_azure_entry_parses_deployments() -> None:
    config = parse_config(
        "providers: [{id: az, type: azure, api_key: k, base_url: 'https://x.openai.azure.com',"
        " api_version: '2024-10-21', deployments: {gpt-4o: prod}}]\n"
    )
    [provider] = config.providers
    assert isinstance(provider, AzureSettings)
    assert provider.deployments == {"gpt-4o": "prod"}


def test_azure_entry_requires_base_url_and_api_version() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("providers: [{id: az, type: azure, api_key: k}]\n")
    assert set(caught.value.problems) == {
        "providers[0].base_url: required key is missing",
        "providers[0].api_version: required key is missing",
    }
