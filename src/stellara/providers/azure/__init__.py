"""Azure OpenAI: OpenAI's wire schema under a deployment URL, with an `api-key` header."""

from stellara.providers.azure.api import AzureAdapter, AzureSettings, create_adapter

__all__ = ["AzureAdapter", "AzureSettings", "create_adapter"]
