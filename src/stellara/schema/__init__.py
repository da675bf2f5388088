"""Canonical types: the OpenAI-shaped models every part of the gateway speaks."""
