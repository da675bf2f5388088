"""The answer cache a config describes, and the start-up restore of its semantic index."""

from __future__ import annotations

import logging

from stellara._clock import Clock
from stellara._tasks import BackgroundTasks
from stellara.cache.exact import ExactCache
from stellara.cache.l1 import L1Cache
from stellara.cache.stage import AnswerCache
from stellara.config.models import StellaraConfig
from stellara.state.base import StateBackend

logger = logging.getLogger(__name__)


def build_answer_cache(
    config: StellaraConfig, state: StateBackend, clock: Clock
) -> AnswerCache | None:
    """L1, plus L2 when the state backend shares one, plus the semantic level when enabled
    (its model loads on first use); None without a `cache:` section."""
    settings = config.cache
    if settings is None:
        return None
    l1 = L1Cache(settings.l1.max_entries, settings.l1.max_bytes, clock)
    l2 = state.cache if settings.l2.enabled else None
    semantic = None
    if settings.semantic.enabled:
        # Imported here: numpy and the tokenizer cost every other gateway memory and start-up.
        from stellara.cache.embedder import SentenceEmbedder
        from stellara.cache.semantic import SemanticCache

        semantic = SemanticCache(
            SentenceEmbedder(),
            threshold=settings.semantic.threshold,
            max_entries=settings.semantic.max_entries,
            clock=clock,
        )
    return AnswerCache(settings, ExactCache(l1, l2, clock), semantic, clock)


class SemanticRestore:
    """Rebuilds the semantic index from the shared L2 in the background at start-up (serving
    does not wait: until it is done, lookups only miss more)."""

    def __init__(self, cache: AnswerCache) -> None:
        self._cache = cache
        self._background = BackgroundTasks()

    @staticmethod
    def needed(cache: AnswerCache | None) -> bool:
        """Whether `cache` has a semantic index and a shared level to restore it from."""
        return cache is not None and cache.semantic is not None and cache.exact.l2 is not None

    async def start(self) -> None:
        self._background.run(self._restore())

    async def stop(self) -> None:
        await self._background.cancel()

    async def _restore(self) -> None:
        restored = await self._cache.restore_shared()
        logger.info("semantic cache: %d entries restored from the shared cache", restored)
