"""What the pipeline knows about one request as it moves through the stages."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from stellara.cache.stage import CacheControl
from stellara.config.models import Strategy
from stellara.limits import Ticket
from stellara.limits.guard import ConcurrencySlot
from stellara.principal import Principal
from stellara.schema.chat import Usage

NO_CACHE_CONTROL = CacheControl()


class AttemptSpan(NamedTuple):
    """One call to a provider: when (monotonic), on what, and how it ended."""

    provider: str
    model: str
    started_at: float
    ended_at: float
    error: str | None  # the error's code; None when it answered


@dataclass(slots=True)
class RequestContext:
    """Created by the HTTP layer per request; the stages fill in what they decide."""

    request_id: str
    principal: Principal
    started_at: float
    deadline: float
    # The inbound API's declared path (`/v1/messages`, …); empty outside the HTTP API.
    endpoint: str = ""
    public_model: str = ""
    provider_id: str = ""
    provider_type: str = ""
    provider_model: str = ""
    attempts: int = 0
    retries: int = 0  # attempts repeated on the same target
    fallbacks: int = 0  # moves to a fallback model
    is_streaming: bool = False
    usage: Usage | None = None
    cost_usd: float = 0.0  # priced from the catalog when the request ends
    usage_estimated: bool = False  # `usage` counted by the gateway: the provider sent none
    session_id: str | None = None  # `X-Session-Id`, for session quotas
    ticket: Ticket | None = None  # the limits' admission, settled when the request ends
    slot: ConcurrencySlot | None = None  # its place in its tenant's concurrency, when limited
    cache_control: CacheControl = NO_CACHE_CONTROL  # what the client asked of the cache
    cache_status: str = "miss"  # `x-stellara-cache`: miss, hit or semantic
    route: str = ""  # `x-stellara-route`: the strategy's choice and why
    dropped_params: tuple[str, ...] = ()  # canonical parameters not sent to the provider
    # The inbound dialect's names of canonical parameters it names otherwise (`max_output_tokens`
    # for `max_completion_tokens`, …): refusals and `x-stellara-dropped-params` use them.
    param_names: Mapping[str, str] | None = None
    # `x-stellara-variant` (a key allowed to pin): an experiment's variant, or "none".
    variant_pin: str | None = None
    experiment: str = ""  # the experiment that served the request (headers)
    variant: str = ""  # … and its variant
    in_experiment: bool = False  # counted in the experiment's records (not pinned or paused)
    routing_strategy: Strategy | None = None  # /ai-orchestration/generate's override
    routing_providers: frozenset[str] | None = None  # … and its filter of provider ids
    failures: list[str] = field(default_factory=list)  # "provider/model: error", per attempt
    attempt_spans: list[AttemptSpan] = field(default_factory=list)
    started_epoch_s: float = 0.0  # wall clock, for usage records
    first_byte_at: float | None = None  # monotonic: the answer (or its first chunk) in hand
    prompt_text: str | None = None  # kept only with usage_store.log_content
    completion_text: str | None = None

    def release(self) -> None:
        """Give back the request's concurrency slot (its end; again is harmless)."""
        if self.slot is not None:
            self.slot.release()

    def remaining_s(self, now: float) -> float:
        return self.deadline - now
