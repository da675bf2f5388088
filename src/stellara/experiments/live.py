"""An experiment as the request path uses it: its variants resolved to what serves them.

`LiveExperiment.build` resolves an `ExperimentConfig` once (when the experiments are loaded or
changed), so a request only hashes its unit, finds its slice and, for a variant that changes
anything, swaps the public model or copies the request with the overrides.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import msgspec

from stellara.config.experiments import ExperimentConfig, ExperimentStatus, VariantOverrides
from stellara.experiments.assign import slice_ends, variant_at
from stellara.routing.models import ModelTable, PublicModel
from stellara.schema.chat import ChatRequest, SystemMessage


@dataclass(frozen=True, slots=True)
class LiveVariant:
    """One variant: the model that serves it (None: the experiment's model as configured) and
    the request overrides it applies (None: none)."""

    name: str
    model: PublicModel | None
    overrides: VariantOverrides | None

    def apply(self, public: PublicModel, request: ChatRequest) -> tuple[PublicModel, ChatRequest]:
        """What serves the request under this variant, and the request as it is sent."""
        model = self.model or public
        overrides = self.overrides
        if overrides is None:
            return model, request
        return model, _overridden(request, overrides)


@dataclass(frozen=True, slots=True)
class Assignment:
    """The experiment a request is in and its variant. `is_counted` is False for a pinned
    variant and for an experiment that is not running: the variant is served and shown, but
    left out of the experiment's records."""

    experiment_id: str
    variant: LiveVariant
    is_counted: bool = True


@dataclass(frozen=True, slots=True)
class LiveExperiment:
    """A loaded experiment (see the module docstring). `ends` are the variants' slices: the
    config's shares, or adaptive allocation's latest."""

    config: ExperimentConfig
    status: ExperimentStatus
    winner: str | None
    variants: tuple[LiveVariant, ...]
    ends: tuple[float, ...]
    # One counted assignment per variant, made once: the request path only picks one.
    assignments: tuple[Assignment, ...]

    @classmethod
    def build(
        cls,
        config: ExperimentConfig,
        models: ModelTable,
        *,
        status: ExperimentStatus,
        winner: str | None,
        shares: Mapping[str, float] | None = None,
    ) -> LiveExperiment:
        """Resolve `config`'s variants on `models` (the config was checked against them).
        `shares` (fractions per variant) replace the configured ones: adaptive allocation."""
        base = models.get(config.model)
        assert base is not None, "experiments are checked against the models"
        variants: list[LiveVariant] = []
        for variant in config.variants:
            model: PublicModel | None = None
            if variant.targets is not None:
                model = models.served_by(base, variant.targets)
            elif variant.model is not None:
                model = models.get(variant.model)
            variants.append(LiveVariant(variant.name, model, variant.overrides))
        weights = [
            shares.get(v.name, 0.0) if shares is not None else v.share for v in config.variants
        ]
        if sum(weights) <= 0:
            weights = [v.share for v in config.variants]
        counted = tuple(Assignment(config.id, variant) for variant in variants)
        return cls(config, status, winner, tuple(variants), slice_ends(weights), counted)

    @property
    def id(self) -> str:
        return self.config.id

    @property
    def shares(self) -> dict[str, float]:
        """Each variant's current fraction of the units."""
        starts = (0.0, *self.ends[:-1])
        return {
            v.name: end - start
            for v, start, end in zip(self.variants, starts, self.ends, strict=True)
        }

    def assignment_at(self, place: float) -> Assignment:
        """The counted assignment of a unit at `place` (`unit_place`) while it runs."""
        return self.assignments[variant_at(self.ends, place)]

    def named(self, name: str) -> LiveVariant | None:
        return next((v for v in self.variants if v.name == name), None)

    @property
    def served_after(self) -> LiveVariant:
        """What everyone gets when the experiment is not running: the winner once stopped
        with one, else the control."""
        chosen = self.winner if self.status == "stopped" and self.winner else None
        found = self.named(chosen or self.config.control_name)
        assert found is not None, "control and winner name variants (validated)"
        return found

    @property
    def variant_names(self) -> Sequence[str]:
        return [v.name for v in self.variants]


def _overridden(request: ChatRequest, overrides: VariantOverrides) -> ChatRequest:
    changes: dict[str, object] = {}
    if overrides.system_prefix is not None:
        changes["messages"] = [SystemMessage(content=overrides.system_prefix), *request.messages]
    if overrides.temperature is not None:
        changes["temperature"] = overrides.temperature
    if overrides.max_tokens is not None:
        # The request's own ceiling field, so a reasoning model keeps `max_completion_tokens`.
        field = "max_tokens" if request.max_tokens is not None else "max_completion_tokens"
        changes[field] = overrides.max_tokens
    if overrides.reasoning_effort is not None:
        changes["reasoning_effort"] = overrides.reasoning_effort
    return msgspec.structs.replace(request, **changes)
