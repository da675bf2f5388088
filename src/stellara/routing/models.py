"""The public model table: each public name and the provider targets behind it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Protocol

from stellara.config.models import CostFloorConfig, ModelConfig, Strategy
from stellara.errors import ModelNotFoundError, PermissionDeniedError
from stellara.principal import Principal
from stellara.providers.base import ProviderAdapter


class TargetSpec(Protocol):
    """A target as the config writes it (a model's, or an experiment variant's)."""

    @property
    def provider(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def weight(self) -> float: ...


@dataclass(frozen=True, slots=True)
class Target:
    """One provider, its config `type` (the catalog's key), and the model name it uses.

    `drop_unsupported_params` is its public model's setting (else the top-level one): a
    parameter its provider cannot honour is dropped rather than refused."""

    adapter: ProviderAdapter
    provider_type: str
    model: str
    weight: float = 1.0
    drop_unsupported_params: bool = False


@dataclass(frozen=True, slots=True)
class PublicModel:
    name: str
    targets: tuple[Target, ...]
    strategy: Strategy = "priority"
    fallbacks: tuple[str, ...] = ()
    cost_floor: CostFloorConfig | None = None  # what `cost` requires of the target it picks


class ModelTable:
    """Resolves a public model name for a principal."""

    def __init__(
        self,
        models: Iterable[ModelConfig],
        adapters: Mapping[str, ProviderAdapter],
        provider_types: Mapping[str, str],
        *,
        drop_unsupported_params: bool = False,
    ) -> None:
        """`drop_unsupported_params` is the top-level setting, for models that set none."""
        self._adapters = adapters
        self._provider_types = provider_types
        self._models: dict[str, PublicModel] = {}
        for m in models:
            drop = m.drop_unsupported_params
            if drop is None:
                drop = drop_unsupported_params
            targets = self._targets(m.targets, drop)
            self._models[m.name] = PublicModel(
                m.name, targets, m.strategy, tuple(m.fallbacks), m.cost_floor
            )

    def _targets(self, targets: Iterable[TargetSpec], drop: bool) -> tuple[Target, ...]:
        return tuple(
            Target(
                self._adapters[t.provider],
                self._provider_types[t.provider],
                t.model,
                t.weight,
                drop,
            )
            for t in targets
        )

    def served_by(self, model: PublicModel, targets: Iterable[TargetSpec]) -> PublicModel:
        """`model` served by other `targets` (an experiment's variant): its name, strategy,
        fallbacks and `drop_unsupported_params` kept."""
        drop = model.targets[0].drop_unsupported_params
        return replace(model, targets=self._targets(targets, drop))

    def resolve(self, principal: Principal, name: str) -> PublicModel:
        """The public model `name`; 404 if unknown, 403 if the key may not use it."""
        model = self._models.get(name)
        if model is None:
            raise ModelNotFoundError(
                f"The model {name!r} does not exist or you do not have access to it.",
                param="model",
            )
        if not principal.may_use(name):
            raise PermissionDeniedError(f"This key may not use the model {name!r}.", param="model")
        return model

    def get(self, name: str) -> PublicModel | None:
        """The public model `name`, without permission checks (fallbacks are the config's
        choice, not the caller's)."""
        return self._models.get(name)

    def visible_to(self, principal: Principal) -> list[str]:
        """The public model names `principal` may use, in config order."""
        return [name for name in self._models if principal.may_use(name)]
