"""The shape of `experiments:` and `feedback:` in `stellara.yaml`, and their cross-checks.

An experiment runs on one public model: each request of a unit (a user, a key or a session) is
served by one of its variants, the same one for as long as the experiment runs. A variant is the
model as configured (the control), other targets, another public model, and/or overrides of the
request. Feedback metrics are what clients report on answers (`POST /v1/feedback`); an experiment's
report compares its variants on them, and `allocation: adaptive` shifts traffic towards the variant
that does best on its `metric`.

The same models validate experiments created through the admin API, so one set of rules holds
for both; `experiment_problems` checks what needs the rest of the config (models, providers,
metrics).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Slug = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
ExperimentStatus = Literal["running", "paused", "stopped"]
ExperimentUnit = Literal["user", "key", "session"]
ReasoningEffort = Literal["minimal", "low", "medium", "high"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VariantTargetConfig(_Strict):
    """A provider and model a variant is served by (the model's own targets' shape)."""

    provider: str
    model: str = Field(min_length=1)
    weight: float = Field(default=1.0, gt=0)


class VariantOverrides(_Strict):
    """Changes to the request a variant makes before it is routed."""

    system_prefix: str | None = Field(default=None, min_length=1)  # put before the system prompt
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1)
    reasoning_effort: ReasoningEffort | None = None


class VariantConfig(_Strict):
    """One arm of an experiment. With neither `targets` nor `model` it is served by the
    experiment's model as configured; `overrides` apply either way."""

    name: Slug  # in `x-stellara-variant`, records and metrics
    # Percent of the experiment's units; 0: only a pin reaches it (also under `adaptive`).
    share: float = Field(ge=0, le=100)
    targets: list[VariantTargetConfig] | None = Field(default=None, min_length=1)
    model: str | None = Field(default=None, min_length=1)  # another public model
    overrides: VariantOverrides | None = None

    @model_validator(mode="after")
    def _one_route(self) -> VariantConfig:
        if self.targets is not None and self.model is not None:
            raise ValueError("a variant sets `targets` or `model`, not both")
        return self


class ExperimentConfig(_Strict):
    """An experiment on the public model `model`: each unit (a user, a key, or a session)
    gets one variant, the same on every process for as long as the experiment runs. The
    admin API can pause it (everyone gets the control), stop it (everyone gets the
    `winner`, else the control) or start it again; see the Experiments guide."""

    id: Slug  # names it in headers, records, metrics and the admin API
    model: str = Field(min_length=1)  # the public model whose requests it splits
    # What assignment is sticky for; `session` needs `X-Session-Id` (requests without one
    # are served as the model is configured and not counted).
    unit: ExperimentUnit = "user"
    # `fixed`: the shares as written; `adaptive`: Thompson sampling on `metric`, shares
    # recomputed every few seconds from the feedback every process shares.
    allocation: Literal["fixed", "adaptive"] = "fixed"
    # The feedback metric adaptive allocation maximises; the report shows every metric.
    metric: str | None = None
    # Adaptive: reward = metric value - cost_weight * the request's cost in USD.
    cost_weight: float = Field(default=0.0, ge=0)
    # Adaptive: no variant gets less than this percentage, so each keeps being measured.
    min_share: float = Field(default=5.0, ge=0, le=50)
    control: Slug | None = None  # the variant others are compared with; default: the first
    # Applied when the file's value changes; the admin API may change it in between.
    status: ExperimentStatus = "running"
    winner: Slug | None = None  # who everyone gets once the experiment is stopped
    variants: list[VariantConfig] = Field(min_length=2, max_length=16)

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentConfig:
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError("variant names must be unique")
        total = sum(v.share for v in self.variants)
        if abs(total - 100.0) > 1e-6:
            raise ValueError(f"variant shares must add up to 100, not {total:g}")
        for field, name in (("control", self.control), ("winner", self.winner)):
            if name is not None and name not in names:
                raise ValueError(f"{field}: no variant is named {name!r}")
        if self.allocation == "adaptive" and self.metric is None:
            raise ValueError("adaptive allocation needs the `metric` it maximises")
        return self

    @property
    def control_name(self) -> str:
        return self.control or self.variants[0].name


class FeedbackMetricConfig(_Strict):
    """A metric clients report: a boolean (thumbs up, task success) or a number (a rating, a
    judge's score) within `min`..`max` when given."""

    type: Literal["boolean", "number"]
    min: float | None = None
    max: float | None = None
    higher_is_better: bool = True

    @model_validator(mode="after")
    def _bounds(self) -> FeedbackMetricConfig:
        if self.type == "boolean" and (self.min is not None or self.max is not None):
            raise ValueError("a boolean metric has no `min` or `max`")
        if self.min is not None and self.max is not None and self.min >= self.max:
            raise ValueError("`min` must be below `max`")
        return self


class FeedbackConfig(_Strict):
    metrics: dict[Slug, FeedbackMetricConfig] = Field(default_factory=dict)


def experiment_problems(
    experiment: ExperimentConfig,
    *,
    models: Collection[str],
    providers: Collection[str],
    metrics: Mapping[str, FeedbackMetricConfig],
    path: str,
) -> list[str]:
    """What in `experiment` names something the config does not have, one line per problem
    prefixed with `path` (`experiments[0]`)."""
    problems: list[str] = []
    if experiment.model not in models:
        problems.append(f"{path}.model: unknown model {experiment.model!r}")
    if experiment.metric is not None and experiment.metric not in metrics:
        problems.append(f"{path}.metric: no feedback metric is named {experiment.metric!r}")
    for i, variant in enumerate(experiment.variants):
        where = f"{path}.variants[{i}]"
        if variant.model is not None and variant.model not in models:
            problems.append(f"{where}.model: unknown model {variant.model!r}")
        problems.extend(
            f"{where}.targets[{j}].provider: unknown provider {target.provider!r}"
            for j, target in enumerate(variant.targets or ())
            if target.provider not in providers
        )
    return problems
