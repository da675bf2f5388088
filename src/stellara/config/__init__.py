"""Configuration: pydantic models of the YAML file, and the loader that checks it.

Load a config through `stellara.assembly.config` (`load_config`, `parse_config`,
`check_config`): it hands the loader the provider registry's settings models.
"""

from stellara.config.models import (
    KeyConfig,
    ModelConfig,
    ProviderSettings,
    ResilienceConfig,
    ServerConfig,
    StellaraConfig,
    TargetConfig,
)

__all__ = [
    "KeyConfig",
    "ModelConfig",
    "ProviderSettings",
    "ResilienceConfig",
    "ServerConfig",
    "StellaraConfig",
    "TargetConfig",
]
