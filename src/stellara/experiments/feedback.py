"""Feedback on answers: checked, scoped to the caller's user, stored, and counted.

A client reports a metric the config declares (`feedback.metrics`) on a request its user
made. The request is found by its usage record: in SQL, or still waiting in this process's
usage writer (a request rated right after its answer, before the next flush). Another user's
request is answered exactly like an unknown one (404), so request ids cannot be probed.

The first value reported per request and metric also counts towards adaptive allocation (when
an adaptive experiment's variant served it) and towards `strategy: cost`'s quality floor (per
provider target, in the process that took the feedback); a changed mind replaces the stored
value but is not counted twice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from stellara._clock import Clock
from stellara.config.experiments import FeedbackConfig, FeedbackMetricConfig
from stellara.errors import InvalidRequestError, RouteNotFoundError
from stellara.events import EventBus, FeedbackReceived
from stellara.experiments.book import ExperimentBook
from stellara.principal import Principal
from stellara.routing.feedback import FeedbackBoard
from stellara.store.feedback import FeedbackStore, FeedbackValue, RatedRequest
from stellara.store.usage import UsageWriter


@dataclass(frozen=True, slots=True)
class Accepted:
    """A stored feedback value and what it rated."""

    request_id: str
    metric: str
    value: float
    experiment: str | None
    variant: str | None


class FeedbackDesk:
    """Takes `POST /v1/feedback` (see the module docstring); one per gateway."""

    def __init__(
        self,
        config: FeedbackConfig,
        store: FeedbackStore,
        usage: UsageWriter,
        experiments: ExperimentBook,
        board: FeedbackBoard,
        events: EventBus,
        clock: Clock,
    ) -> None:
        """`board` is what `strategy: cost`'s quality floor reads, per provider target."""
        self._board = board
        self._metrics = config.metrics
        self._events = events
        self._store = store
        self._usage = usage
        self._experiments = experiments
        self._clock = clock

    async def submit(
        self, caller: Principal, request_id: str, metric: str, value: bool | float
    ) -> Accepted:
        """Store `caller`'s `value` of `metric` on `request_id`; 400 for an unknown metric or
        a value of the wrong type or range, 404 for a request that is not the caller's."""
        number = self._checked(metric, value)
        rated = await self._rated(request_id)
        if rated is None or rated.user != caller.user:
            raise RouteNotFoundError(
                f"No request {request_id!r} of yours is recorded (feedback is taken once the "
                "request has ended).",
                param="request_id",
            )
        now = self._clock.time()
        is_first = await self._store.put(
            FeedbackValue(request_id, metric, number, caller.user, caller.key_id, now)
        )
        self._events.publish(
            FeedbackReceived(
                request_id=request_id,
                user=caller.user,
                metric=metric,
                value=number,
                is_first=is_first,
                experiment=rated.experiment,
                variant=rated.variant,
                model=rated.model,
                provider=rated.provider,
            )
        )
        if is_first and rated.provider is not None and rated.provider_model is not None:
            self._board.record(f"{rated.provider}/{rated.provider_model}", metric, number)
        if is_first and rated.experiment is not None and rated.variant is not None:
            await self._experiments.reward(
                rated.experiment, rated.variant, metric, number, rated.cost_usd
            )
        return Accepted(request_id, metric, number, rated.experiment, rated.variant)

    async def _rated(self, request_id: str) -> RatedRequest | None:
        pending = self._usage.pending_row(request_id)
        if pending is not None:
            return RatedRequest.from_row(pending)
        return await self._store.rated_request(request_id)

    def _checked(self, metric: str, value: bool | float) -> float:
        declared = self._metrics.get(metric)
        if declared is None:
            names = ", ".join(sorted(self._metrics)) or "none are configured"
            raise InvalidRequestError(
                f"Unknown feedback metric {metric!r} (metrics: {names}).", param="metric"
            )
        return _value(metric, declared, value)


def _value(metric: str, declared: FeedbackMetricConfig, value: bool | float) -> float:
    if declared.type == "boolean":
        if not isinstance(value, bool):
            raise InvalidRequestError(f"The metric {metric!r} takes true or false.", param="value")
        return 1.0 if value else 0.0
    if isinstance(value, bool) or not math.isfinite(value):
        raise InvalidRequestError(f"The metric {metric!r} takes a finite number.", param="value")
    low, high = declared.min, declared.max
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"{'-∞' if low is None else f'{low:g}'}..{'∞' if high is None else f'{high:g}'}"
        raise InvalidRequestError(
            f"The metric {metric!r} takes values in {bounds}, not {value:g}.", param="value"
        )
    return float(value)
