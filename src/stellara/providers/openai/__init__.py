"""OpenAI's Chat Completions wire format, and any server that speaks it (vLLM, llama.cpp,
Ollama, LM Studio): `type: openai` with a `base_url`."""

from stellara.providers.openai.api import OpenAIAdapter, OpenAISettings, create_adapter

__all__ = ["OpenAIAdapter", "OpenAISettings", "create_adapter"]
