"""The shipped example config stays valid: documentation that cannot drift."""

from __future__ import annotations

from pathlib import Path

from stellara.assembly.config import load_config

EXAMPLE = Path(__file__).parents[2] / "examples" / "stellara.yaml"


def test_example_config_is_valid_with_every_section() -> None:
    environ = dict.fromkeys(
        (
            "STELLARA_MASTER_KEY",
            "OPENAI_API_KEY",
            "ANTHROPIC_API_KEY",
            "GEMINI_API_KEY",
            "AZURE_KEY",
            "APP_KEY",
        ),
        "sk-example-value-123",
    )
    config = load_config(EXAMPLE, environ=environ)
    assert {p.type for p in config.providers} == {"openai", "anthropic", "google", "azure"}
    assert config.cache is not None
    assert config.cache.semantic.enabled
    assert "free" in config.limits.tiers
    assert config.state.backend == "redis"
