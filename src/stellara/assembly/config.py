"""The config a gateway is built from: a file, YAML text or a mapping, checked against every
registered provider type.

This is where config loading meets the provider registry. `stellara.config` checks a file's
shape, but each provider entry is validated with the settings model of its `type`, and the
registry that knows those models sits a layer above config (it imports every adapter). Call
these, not `stellara.config.loader`, wherever a config comes from outside.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from stellara.config.loader import (
    ProviderSettingsModels,
    parse_yaml,
    read_config_text,
    validate_config,
)
from stellara.config.models import StellaraConfig
from stellara.providers import provider_types


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> StellaraConfig:
    """Load `path`; raise `ConfigError` listing every problem."""
    return parse_config(read_config_text(path), source=str(path), environ=environ)


def parse_config(
    text: str, *, source: str = "<config>", environ: Mapping[str, str] | None = None
) -> StellaraConfig:
    """Parse YAML text into a checked config; raise `ConfigError` listing every problem."""
    raw, problems = parse_yaml(text, source=source, environ=environ)
    return check_config(raw, problems=problems)


def check_config(raw: dict[str, Any], *, problems: list[str] | None = None) -> StellaraConfig:
    """Validate an already-parsed, interpolated config mapping; raise `ConfigError` listing
    every problem (plus any in `problems` already found)."""
    return validate_config(raw, _provider_settings(), problems=problems)


def _provider_settings() -> ProviderSettingsModels:
    return {kind: known.settings_model for kind, known in provider_types().items()}
