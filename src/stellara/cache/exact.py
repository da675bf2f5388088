"""The exact cache: L1 in this process, L2 shared through the state backend.

A lookup goes L1 → L2 and promotes an L2 hit into L1; a store writes both. Removals reach the
other processes through the L2's invalidation broadcast, so none of them serves what was
cleared. A failing L2 degrades to L1 only: the cache never fails a request.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import msgspec

from stellara._clock import Clock
from stellara.cache.l1 import CachedAnswer, L1Cache, LevelStats
from stellara.errors import StateBackendError
from stellara.state.base import CacheStore, Invalidation

logger = logging.getLogger(__name__)

# msgpack keeps the answer's bytes as bytes (JSON would base64 them).
_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(CachedAnswer).decode


@dataclass(slots=True)
class L2Stats(LevelStats):
    errors: int = 0
    invalidations: int = 0


class ExactCache:
    """Answers by exact key, on one or two levels."""

    def __init__(self, l1: L1Cache, l2: CacheStore | None, clock: Clock) -> None:
        self.l1 = l1
        self.l2 = l2
        self._clock = clock
        self.l2_stats = L2Stats()
        if l2 is not None:
            l2.on_invalidation(self._apply)

    async def get(self, key: str, *, allow_stale: bool = False) -> CachedAnswer | None:
        answer = self.l1.get(key, allow_stale=allow_stale)
        if answer is not None or self.l2 is None:
            return answer
        try:
            raw = await self.l2.get(key)
        except StateBackendError as exc:
            self._l2_failed("get", exc)
            return None
        now = self._clock.time()
        found = _decode(raw) if raw is not None else None
        if (
            found is None
            or found.stale_until <= now
            or (found.expires_at <= now and not allow_stale)
        ):
            self.l2_stats.misses += 1
            return None
        self.l2_stats.hits += 1
        self.l1.put(key, found)
        return found

    async def put(self, key: str, answer: CachedAnswer) -> None:
        self.l1.put(key, answer)
        if self.l2 is None:
            return
        ttl_s = answer.stale_until - self._clock.time()
        if ttl_s <= 0:
            return
        try:
            await self.l2.put(key, _encode(answer), ttl_s, scope=answer.scope, model=answer.model)
        except StateBackendError as exc:
            self._l2_failed("put", exc)

    async def clear(self, *, scope: str | None = None, model: str | None = None) -> int:
        """Remove matching entries everywhere; how many (the larger of the two levels)."""
        removed = self.l1.clear(scope=scope, model=model)
        if self.l2 is not None:
            try:
                removed = max(removed, await self.l2.clear(scope=scope, model=model))
            except StateBackendError as exc:
                self._l2_failed("clear", exc)
                raise
        return removed

    def _apply(self, invalidation: Invalidation) -> None:
        """Another process removed something: drop our L1 copies of it."""
        self.l2_stats.invalidations += 1
        if invalidation.key is not None:
            self.l1.discard(invalidation.key)
        else:
            self.l1.clear(scope=invalidation.scope, model=invalidation.model)

    def _l2_failed(self, operation: str, exc: StateBackendError) -> None:
        self.l2_stats.errors += 1
        logger.warning("cache L2 %s failed, serving from L1 only: %s", operation, exc.message)
