"""Active health probes: every `interval_s`, a 1-token request to each provider.

Passive health (from live traffic) says nothing about a provider nobody is using, or one a
breaker keeps traffic away from; the probes fill that gap at the price of one tiny request
per provider per interval. When several gateway processes share state, one of them probes
each round: the round is admitted through the limits store as "1 request per interval", so
exactly one process wins it, with the same atomic admission that guards user limits.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping

from stellara._clock import Clock
from stellara.config.models import HealthCheckConfig
from stellara.errors import StateBackendError, UpstreamError
from stellara.providers.base import ProviderAdapter
from stellara.routing.health import HealthBoard
from stellara.schema.chat import ChatRequest, UserMessage
from stellara.state.base import LimitStore, WindowLimit

logger = logging.getLogger(__name__)

PROBE_SCOPE = "__stellara_health_probe__"


class HealthProber:
    """Runs probe rounds in the background until `stop`."""

    def __init__(
        self,
        adapters: Mapping[str, ProviderAdapter],
        probe_models: Mapping[str, str],
        health: HealthBoard,
        settings: HealthCheckConfig,
        clock: Clock,
        *,
        lock: LimitStore | None = None,
    ) -> None:
        self._adapters = adapters
        self._probe_models = dict(probe_models)
        self._health = health
        self._settings = settings
        self._clock = clock
        self._lock = lock
        self._round = WindowLimit("probe_round", "requests", settings.interval_s * 0.9, 1)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._probe_models and self._task is None:
            self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _loop(self) -> None:
        # The first round waits an interval: a process that just started has nothing to learn
        # that its first requests will not tell it, and tests count upstream requests.
        while True:
            await asyncio.sleep(self._settings.interval_s)
            if await self._won_round():
                await self.probe_all()

    async def _won_round(self) -> bool:
        if self._lock is None:
            return True
        try:
            admission = await self._lock.admit(
                PROBE_SCOPE, [self._round], {"requests": 1}, f"probe-{os.getpid()}-{id(self)}"
            )
        except StateBackendError:
            return True  # the state is down: better every process probes than none
        return admission.admitted

    async def probe_all(self) -> None:
        """One probe of every provider, concurrently."""
        await asyncio.gather(
            *(self._probe(provider, model) for provider, model in self._probe_models.items())
        )

    async def _probe(self, provider: str, model: str) -> None:
        request = ChatRequest(model=model, messages=[UserMessage(content="ping")], max_tokens=1)
        started = self._clock.monotonic()
        try:
            await self._adapters[provider].chat(request, model, timeout_s=self._settings.timeout_s)
        except UpstreamError as exc:
            latency = self._clock.monotonic() - started
            self._health.record_probe(provider, False, latency, exc)
            logger.warning("health probe of %s failed: %s", provider, exc.message)
            return
        self._health.record_probe(provider, True, self._clock.monotonic() - started, None)
