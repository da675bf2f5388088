"""`scripted_gateway`: the request path over scripted providers, without sockets.

Use it to test what the gateway does with a request (limits, cache, attempts, streams) and,
above all, how each request ends: its one record, its one settle, the in-flight count. It is
built from a config as `stellara.assembly.build_runtime` builds it, with the same builders,
but only the parts a request passes through, and nothing to start or stop. Use
`build_runtime` and the HTTP app when the test is about HTTP, start-up or shutdown.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stellara._clock import Clock
from stellara._tasks import BackgroundTasks
from stellara.assembly.cache import build_answer_cache
from stellara.assembly.config import check_config
from stellara.assembly.resilience import build_attempt_runner
from stellara.catalog import Catalog
from stellara.events import EventBus
from stellara.limits import Limiter, LimitEvents, LimitsPolicy
from stellara.pipeline.gateway import Gateway
from stellara.pipeline.params import ParamGuard
from stellara.routing.models import ModelTable
from stellara.state.base import StateBackend
from stellara.state.memory import MemoryBackend
from stellara.testing._adapter import ScriptedAdapter
from stellara.testing._clock import ManualClock
from stellara.tokens import TokenCounter

# asyncio.sleep runs on the event loop's clock, not a ManualClock: keep retry waits tiny.
_INSTANT_RETRIES = {"retry": {"base_delay_ms": 1, "max_delay_ms": 1, "jitter": False}}


def scripted_gateway(
    *adapters: ScriptedAdapter,
    config: Mapping[str, Any] | None = None,
    clock: Clock | None = None,
    events: EventBus | None = None,
    state: StateBackend | None = None,
    tokens: TokenCounter | None = None,
    types: Mapping[str, str] | None = None,
) -> Gateway:
    """A `Gateway` whose providers are `adapters`, each an `openai`-type provider of its id
    (so the catalog prices its models as OpenAI's) unless `types` gives it another.

    Args:
        config: any section of a Stellara config (`models`, `limits`, `cache`, `resilience`,
            `usage_store`, …), each replacing the default whole. By default one model,
            `smart`, is served by `gpt-4o` on every adapter in order, and retries wait a
            millisecond. `providers` comes from the adapters and cannot be given.
        clock: what the gateway, limits, cache and breakers read (a `ManualClock` by default).
        events: the bus the gateway publishes on (attach an `EventRecorder` to it).
        state: the state backend of limits and cache (memory on `clock` by default).
        tokens: the token counter of estimates (a new `TokenCounter` by default).
        types: the config `type` of adapters by id, for the catalog's prices and the
            parameter policy (`anthropic`, `google`: types whose entries need no more keys).
    """
    if config is not None and "providers" in config:
        raise ValueError("scripted_gateway: providers come from the adapters")
    clock = clock or ManualClock()
    events = events or EventBus()
    state = state or MemoryBackend(clock)
    raw: dict[str, Any] = {
        "providers": [{"id": a.id, "type": (types or {}).get(a.id, "openai")} for a in adapters],
        "models": [
            {"name": "smart", "targets": [{"provider": a.id, "model": "gpt-4o"} for a in adapters]}
        ],
        "resilience": _INSTANT_RETRIES,
        **(config or {}),
    }
    settings = check_config(raw)
    catalog = Catalog.from_config(settings)
    models = ModelTable(
        settings.models,
        {a.id: a for a in adapters},
        {p.id: p.type for p in settings.providers},
        drop_unsupported_params=settings.drop_unsupported_params,
    )
    attempts = build_attempt_runner(
        settings, models, catalog, events, clock, sync=None, background=BackgroundTasks()
    )
    limits = settings.limits
    limiter = Limiter(
        LimitsPolicy(limits, {}),
        state.limits,
        LimitEvents(events, warn_at=limits.warn_at, backend=state.name),
        clock,
        on_failure=settings.state.on_failure,
    )
    return Gateway(
        models,
        events,
        clock,
        catalog,
        tokens or TokenCounter(),
        attempts=attempts,
        params=ParamGuard.for_registry(),
        limiter=limiter,
        cache=build_answer_cache(settings, state, clock),
        log_content=settings.usage_store.log_content,
    )
