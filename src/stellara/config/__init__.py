"""Configuration: pydantic models of the YAML file, and the loader that checks it."""

from stellara.config.loader import check_config, load_config, parse_config
from stellara.config.models import (
    KeyConfig,
    ModelConfig,
    ResilienceConfig,
    ServerConfig,
    StellaraConfig,
    TargetConfig,
)

__all__ = [
    "KeyConfig",
    "ModelConfig",
    "ResilienceConfig",
    "ServerConfig",
    "StellaraConfig",
    "TargetConfig",
    "check_config",
    "load_config",
    "parse_config",
]
