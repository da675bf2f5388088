"""Shared state: where limits and quotas, breakers, key changes, caches, statistics,
dashboard sessions and stored Responses API responses keep what all gateway processes must
agree on. `memory` for one process, `redis` for many."""

from __future__ import annotations

from stellara._clock import Clock
from stellara.config.models import StateConfig
from stellara.state.base import StateBackend
from stellara.state.memory import MemoryBackend


def open_state_backend(config: StateConfig, clock: Clock) -> StateBackend:
    """The configured state backend; memory runs on the gateway's clock."""
    if config.backend == "redis":
        # Imported here so the memory default needs no Redis client library loaded.
        from stellara.state.redis import RedisBackend

        assert config.redis_url is not None  # the loader requires it for this backend
        return RedisBackend(config.redis_url)
    return MemoryBackend(clock)


__all__ = ["StateBackend", "open_state_backend"]
