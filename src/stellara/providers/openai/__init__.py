"""OpenAI's Chat Completions wire format, and any server that speaks it (vLLM, llama.cpp,
Ollama, LM Studio): `type: openai` with a `base_url`."""

from typing import Any

from stellara.providers.base import ProviderType
from stellara.providers.openai.api import OpenAIAdapter, OpenAISettings, create_adapter
from stellara.providers.openai.params import EMBEDDING_PARAMS, PARAMS


def _sim_entry(sim_url: str) -> dict[str, Any]:
    return {"type": "openai", "base_url": f"{sim_url}/v1", "api_key": "sim-key"}


PROVIDER_TYPE = ProviderType(
    OpenAISettings, create_adapter, _sim_entry, "gpt-4o-mini", PARAMS, EMBEDDING_PARAMS
)

__all__ = ["PROVIDER_TYPE", "OpenAIAdapter", "OpenAISettings", "create_adapter"]
