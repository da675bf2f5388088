"""L1: the in-process LRU of cached answers, bounded in entries and in bytes, with TTLs."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from stellara._clock import Clock, SystemClock


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    """A stored answer: the encoded `chat.completion`, and when it stops being fresh.

    `stale_until` keeps an expired answer for degraded replies only (when every provider
    fails), never for a normal hit.
    """

    body: bytes
    expires_at: float
    stale_until: float
    scope: str
    model: str


@dataclass(slots=True)
class LevelStats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0


class L1Cache:
    """Least-recently-used eviction once `max_entries` or `max_bytes` would be exceeded."""

    def __init__(self, max_entries: int, max_bytes: int, clock: Clock | None = None) -> None:
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._clock = clock or SystemClock()
        self._entries: OrderedDict[str, CachedAnswer] = OrderedDict()
        self._bytes = 0
        self.stats = LevelStats()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def get(self, key: str, *, allow_stale: bool = False) -> CachedAnswer | None:
        """The fresh answer under `key` (or, with `allow_stale`, one kept for degraded use)."""
        answer = self._entries.get(key)
        now = self._clock.time()
        if answer is None or answer.stale_until <= now:
            if answer is not None:
                self._drop(key)
            self.stats.misses += 1
            return None
        if answer.expires_at <= now and not allow_stale:
            self.stats.misses += 1
            return None
        self._entries.move_to_end(key)
        self.stats.hits += 1
        return answer

    def put(self, key: str, answer: CachedAnswer) -> None:
        if len(answer.body) > self._max_bytes:
            return  # larger than the whole cache: not worth evicting everything for
        if key in self._entries:
            self._drop(key)
        self._entries[key] = answer
        self._bytes += len(answer.body)
        while len(self._entries) > self._max_entries or self._bytes > self._max_bytes:
            oldest = next(iter(self._entries))
            self._drop(oldest)
            self.stats.evictions += 1

    def discard(self, key: str) -> None:
        if key in self._entries:
            self._drop(key)

    def clear(self, *, scope: str | None = None, model: str | None = None) -> int:
        """Drop every entry, or those of one scope and/or public model; how many went."""
        if scope is None and model is None:
            count = len(self._entries)
            self._entries.clear()
            self._bytes = 0
            return count
        doomed = [
            key
            for key, answer in self._entries.items()
            if (scope is None or answer.scope == scope) and (model is None or answer.model == model)
        ]
        for key in doomed:
            self._drop(key)
        return len(doomed)

    def _drop(self, key: str) -> None:
        self._bytes -= len(self._entries.pop(key).body)
