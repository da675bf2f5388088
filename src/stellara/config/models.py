"""The shape of `stellara.yaml` (DESIGN §2). Unknown keys are errors everywhere.

Provider entries are validated by the settings model their `type` registers (see
`providers.provider_types`; the loader does it), so a provider type can add keys of its own
without central code naming it.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from stellara.providers.base import ProviderSettings

PublicModelName = Annotated[str, Field(min_length=1, max_length=256)]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(StrictModel):
    host: str = "127.0.0.1"
    port: int = Field(default=4000, ge=0, le=65535)
    master_key: SecretStr | None = None
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    access_log: bool = False


class TargetConfig(StrictModel):
    provider: str
    model: str = Field(min_length=1)


class ModelConfig(StrictModel):
    name: PublicModelName
    targets: list[TargetConfig] = Field(min_length=1)


class ResilienceConfig(StrictModel):
    timeout_s: float = Field(default=60.0, gt=0, le=3600)


class KeyConfig(StrictModel):
    key: SecretStr
    user: str = Field(min_length=1)
    models: list[str] | None = None

    @field_validator("key")
    @classmethod
    def _key_long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 8:
            raise ValueError("a key must be at least 8 characters long")
        return value


class CatalogEntryConfig(StrictModel):
    """A `catalog:` entry: overrides the shipped entry for `provider_model`, or adds one.

    Without `provider_type` it applies to that model on every provider type. Fields left out
    keep the shipped entry's values (the cached-input price keeps its discount ratio); for a
    new model they are unknown, and cached input costs the same as input.
    """

    provider_model: str = Field(min_length=1)
    provider_type: str | None = None
    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)
    cached_input_per_mtok: float | None = Field(default=None, ge=0)
    context_window: int | None = Field(default=None, gt=0)
    max_output_tokens: int | None = Field(default=None, ge=0)
    capabilities: list[Literal["tools", "vision", "json_mode", "embeddings"]] | None = None


class StellaraConfig(StrictModel):
    server: ServerConfig = Field(default_factory=ServerConfig)
    providers: list[ProviderSettings] = Field(default_factory=list)
    models: list[ModelConfig] = Field(default_factory=list)
    resilience: ResilienceConfig = Field(default_factory=ResilienceConfig)
    keys: list[KeyConfig] = Field(default_factory=list)
    catalog: list[CatalogEntryConfig] = Field(default_factory=list)
