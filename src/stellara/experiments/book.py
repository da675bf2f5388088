"""`ExperimentBook`: the experiments a gateway runs, and which variant a request gets.

The request path asks `assign` (a dictionary lookup when the model has no experiment; a hash
and a bisect when it has). What runs is reloaded in the background every `refresh_s`
(`experiments_refresh_s`, about a millisecond of CPU each time, mostly the SQL query): the
experiments table (so a change made through the admin API on any process reaches all of
them within that time, and at once on the process that made it), and for adaptive
experiments the shared reward sums, from which every process computes the same allocation.
Until the database answers, the config's experiments run as the file says.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Iterable, Mapping

from stellara._clock import Clock
from stellara._tasks import BackgroundTasks
from stellara.config.experiments import (
    ExperimentConfig,
    ExperimentStatus,
    FeedbackConfig,
    experiment_problems,
)
from stellara.errors import InvalidRequestError, StateBackendError, StoreUnavailableError
from stellara.experiments.assign import unit_place
from stellara.experiments.bandit import allocate
from stellara.experiments.live import Assignment, LiveExperiment
from stellara.experiments.stats import Sample
from stellara.principal import Principal
from stellara.routing.models import ModelTable
from stellara.state.base import ArmStore
from stellara.store.experiments import ExperimentRecord, ExperimentStore

logger = logging.getLogger(__name__)

OPT_OUT = "none"  # `x-stellara-variant: none`: served as the model is configured
MAX_PLACES = 200_000  # remembered units' places (about 30 MB at most)
_EMPTY = Sample(0, 0.0, 0.0)


class ExperimentBook:
    """The live experiments of one gateway, by public model (see the module docstring)."""

    def __init__(
        self,
        configs: Iterable[ExperimentConfig],
        models: ModelTable,
        feedback: FeedbackConfig,
        *,
        store: ExperimentStore,
        arms: ArmStore,
        clock: Clock,
        refresh_s: float = 2.0,
    ) -> None:
        self._configs = tuple(configs)
        self._models = models
        self._feedback = feedback
        self._store = store
        self._arms = arms
        self._clock = clock
        self._refresh_s = refresh_s
        self._synced = False
        self._left_out: set[str] = set()  # stored experiments this config cannot run
        self._places: dict[tuple[str, str], float] = {}  # (experiment id, unit) → its place
        self._background = BackgroundTasks()
        self._by_id: dict[str, LiveExperiment] = {}
        self._by_model: dict[str, LiveExperiment] = {}
        self._install(
            LiveExperiment.build(c, models, status=c.status, winner=c.winner) for c in self._configs
        )

    @property
    def feedback(self) -> FeedbackConfig:
        return self._feedback

    def get(self, experiment_id: str) -> LiveExperiment | None:
        return self._by_id.get(experiment_id)

    def assign(
        self, principal: Principal, session_id: str | None, model: str, pin: str | None
    ) -> Assignment | None:
        """The variant a request for the public `model` gets, or None (no experiment on it,
        opted out, or a session experiment without a session). `pin` is the
        `x-stellara-variant` header, already allowed for the caller."""
        experiment = self._by_model.get(model)
        if experiment is None:
            return None
        if pin is not None:
            return self._pinned(experiment, pin)
        if experiment.status != "running":
            return Assignment(experiment.id, experiment.served_after, is_counted=False)
        unit = experiment.config.unit
        if unit == "user":
            key = principal.user
        elif unit == "key":
            key = principal.key_id
        elif session_id is not None:
            key = session_id
        else:
            return None
        return experiment.assignment_at(self._place(experiment.id, key))

    def _place(self, experiment_id: str, unit: str) -> float:
        """`unit_place`, remembered: a unit's place never changes, and the hash costs several
        times the lookup on a busy process. Forgotten all at once past `MAX_PLACES`."""
        places = self._places
        place = places.get((experiment_id, unit))
        if place is None:
            if len(places) >= MAX_PLACES:
                places.clear()
            place = places[(experiment_id, unit)] = unit_place(experiment_id, unit)
        return place

    def _pinned(self, experiment: LiveExperiment, pin: str) -> Assignment | None:
        if pin == OPT_OUT:
            return None
        variant = experiment.named(pin)
        if variant is None:
            names = ", ".join(experiment.variant_names)
            raise InvalidRequestError(
                f"The experiment {experiment.id!r} on this model has no variant {pin!r} "
                f"(variants: {names}; or {OPT_OUT!r} to opt out)."
            )
        return Assignment(experiment.id, variant, is_counted=False)

    async def reward(
        self, experiment_id: str, variant: str, metric: str, value: float, cost_usd: float
    ) -> None:
        """Count a feedback `value` towards adaptive allocation, when `metric` is what the
        experiment maximises (reward = value - cost_weight * cost)."""
        experiment = self._by_id.get(experiment_id)
        if experiment is None or experiment.config.allocation != "adaptive":
            return
        if experiment.config.metric != metric:
            return
        reward = value - experiment.config.cost_weight * cost_usd
        await self._arms.add(experiment_id, variant, reward)

    def start(self) -> None:
        self._background.run(self._refresh_forever())

    async def stop(self) -> None:
        await self._background.cancel()

    async def refresh(self) -> None:
        """Reload what runs: the table (after writing the config's experiments to it once)
        and adaptive allocations. Raises what the store or the state backend raise."""
        if not self._synced:
            await self._store.sync_config(self._configs, self._clock.time())
            self._synced = True
        records = [r for r in await self._store.list() if self._is_runnable(r.config)]
        live = [await self._live(record) for record in records]
        self._install(live)

    def _is_runnable(self, config: ExperimentConfig) -> bool:
        """Whether this config still has what `config` names (a stored experiment outlives
        a config change); one that does not is left out, with a warning the first time."""
        problems = self.problems(config, path=f"experiment {config.id!r}")
        if problems and config.id not in self._left_out:
            logger.warning("experiments: not running %s", "; ".join(problems))
        if problems:
            self._left_out.add(config.id)
        else:
            self._left_out.discard(config.id)
        return not problems

    def problems(self, config: ExperimentConfig, *, path: str) -> list[str]:
        """What in `config` this gateway's models, providers and metrics lack."""
        return experiment_problems(
            config,
            models=self._models.names,
            providers=self._models.provider_ids,
            metrics=self._feedback.metrics,
            path=path,
        )

    async def _live(self, record: ExperimentRecord) -> LiveExperiment:
        config = record.config
        shares: Mapping[str, float] | None = None
        if config.allocation == "adaptive" and record.status == "running":
            shares = await self._allocation(config)
        return LiveExperiment.build(
            config, self._models, status=record.status, winner=record.winner, shares=shares
        )

    async def _allocation(self, config: ExperimentConfig) -> dict[str, float]:
        """The variants' shares by Thompson sampling on the shared sums; a variant configured
        with share 0 stays off (reachable by a pin only)."""
        sums = await self._arms.read(config.id)
        arms = {
            v.name: Sample(int(s.n), s.total, s.total_sq) if (s := sums.get(v.name)) else _EMPTY
            for v in config.variants
            if v.share > 0
        }
        metric = self._feedback.metrics.get(config.metric or "")
        is_boolean = metric is not None and metric.type == "boolean" and config.cost_weight == 0
        return allocate(
            arms, boolean=is_boolean, min_share=config.min_share / 100.0, seed=_seed(config, arms)
        )

    def _install(self, experiments: Iterable[LiveExperiment]) -> None:
        """Make `experiments` what runs: by id, and per model the one that decides its
        requests (a running or paused one before a stopped one)."""
        by_id = {e.id: e for e in experiments}
        by_model: dict[str, LiveExperiment] = {}
        for experiment in by_id.values():
            current = by_model.get(experiment.config.model)
            if current is None or _precedence(experiment.status) < _precedence(current.status):
                by_model[experiment.config.model] = experiment
        self._by_id, self._by_model = by_id, by_model

    async def _refresh_forever(self) -> None:
        while True:
            try:
                await self.refresh()
            except (StoreUnavailableError, StateBackendError) as exc:
                logger.warning("experiments: keeping what runs, could not reload: %s", exc)
            await asyncio.sleep(self._refresh_s)


def _precedence(status: ExperimentStatus) -> int:
    return {"running": 0, "paused": 1, "stopped": 2}[status]


def _seed(config: ExperimentConfig, arms: Mapping[str, Sample]) -> int:
    """The same on every process for the same sums: allocation's draws must agree."""
    text = config.id + "".join(f"|{name}:{arm.n:g}" for name, arm in sorted(arms.items()))
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")
