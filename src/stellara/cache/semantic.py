"""The semantic cache engine: a vector index per namespace, and the facade the pipeline calls.

A namespace is everything that must match exactly for a cached answer to apply: the tenant,
the model, and a fingerprint of the conversation before the last user turn (see
`stellara.cache.key.semantic_namespace`). Within a namespace the last user turn is compared by
meaning:

    lookup(namespace, text)
      -> embed text (all-MiniLM-L6-v2, in a worker thread: it is CPU-bound)
      -> exact cosine search over the namespace's vectors (a numpy matrix product)
      -> for the best candidates at or above `threshold`, best first: the guard
         (`stellara.cache.guard`) vetoes texts that differ in numbers, negation, dates, names…
      -> the first candidate the guard accepts, or None

Exact search is used because it is fast enough at gateway scale: ~0.5 ms over 10k vectors on
this machine (see `benchmarks/semantic.py`); an ANN index pays off only past ~20-50k entries
per namespace. The index lives in process; whoever persists entries (e.g. in Redis) rebuilds
it with `SemanticCache.restore`, which takes stored vectors and does not re-embed.
"""

from __future__ import annotations

import asyncio
import statistics
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from stellara._clock import Clock, SystemClock
from stellara.cache.guard import mismatch

__all__ = [
    "DEFAULT_THRESHOLD",
    "Embedder",
    "Match",
    "SemanticCache",
    "SemanticCacheStats",
    "SemanticIndex",
]

Vector = npt.NDArray[np.float32]

DEFAULT_THRESHOLD = 0.85
"""Cosine similarity a candidate needs before the guard looks at it.

Chosen with `benchmarks/semantic.py` on `data/semantic_eval.jsonl`. With the guard, the
`tune` split (on which the guard's word lists were written) has no false hit from 0.80 up;
the `holdout` split, written afterwards, had one at 0.80 ("tablespoons" vs "teaspoons in a
cup": units then missing from the guard's list) and none at 0.85. 0.85 keeps that margin for
near-misses the lists do not know, at ~78 % recall on the paraphrases instead of ~84 %.
"""


class Embedder(Protocol):
    """What the cache needs from an embedding model (`SentenceEmbedder`, or a fake in tests)."""

    def embed(self, texts: Sequence[str]) -> Vector:
        """Unit-length float32 vectors, one row per text. Blocking; called in a thread."""
        ...


@dataclass(frozen=True, slots=True)
class Match:
    """A cached entry served for a lookup.

    Attributes:
        key: the cache key the entry was added under (where the answer is stored).
        score: cosine similarity between the lookup text and the entry's text.
        text: the entry's text, as added.
    """

    key: str
    score: float
    text: str


class _Namespace:
    """One namespace's vectors: a dense matrix that grows by doubling, rows kept packed."""

    def __init__(self, dimension: int) -> None:
        self.matrix: Vector = np.empty((16, dimension), dtype=np.float32)
        self.keys: list[str] = []
        self.texts: list[str] = []
        self.rows: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.keys)

    def add(self, key: str, text: str, vector: Vector) -> None:
        row = self.rows.get(key)
        if row is None:
            row = len(self.keys)
            if row == self.matrix.shape[0]:
                grown = np.empty((row * 2, self.matrix.shape[1]), dtype=np.float32)
                grown[:row] = self.matrix
                self.matrix = grown
            self.keys.append(key)
            self.texts.append(text)
            self.rows[key] = row
        else:
            self.texts[row] = text
        self.matrix[row] = vector

    def remove(self, key: str) -> None:
        # Move the last row into the hole: O(1), and the matrix stays dense for the search.
        row = self.rows.pop(key)
        last = len(self.keys) - 1
        if row != last:
            self.matrix[row] = self.matrix[last]
            self.keys[row] = self.keys[last]
            self.texts[row] = self.texts[last]
            self.rows[self.keys[row]] = row
        self.keys.pop()
        self.texts.pop()

    def best(self, vector: Vector, threshold: float, limit: int) -> list[Match]:
        count = len(self.keys)
        if count == 0:
            return []
        scores = self.matrix[:count] @ vector
        if count > limit:
            top = np.argpartition(scores, count - limit)[count - limit :]
        else:
            top = np.arange(count)
        ranked = top[np.argsort(scores[top])[::-1]]
        return [
            Match(self.keys[i], float(scores[i]), self.texts[i])
            for i in ranked
            if scores[i] >= threshold
        ]


class SemanticIndex:
    """Exact cosine search over unit vectors, per namespace, with a bound on total entries.

    When the index holds `max_entries`, adding evicts the least recently used entry (added
    or served) of any namespace. Keys are unique across namespaces: adding a key that exists
    replaces it. Not thread-safe: use it from one thread (the event loop); a search over 10k
    entries takes well under a millisecond.

    Args:
        max_entries: entries kept across all namespaces.
        dimension: length of the vectors.
    """

    def __init__(self, max_entries: int = 10_000, *, dimension: int = 384) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self.dimension = dimension
        self._namespaces: dict[str, _Namespace] = {}
        self._lru: OrderedDict[str, str] = OrderedDict()  # key -> namespace, oldest first

    def __len__(self) -> int:
        return len(self._lru)

    def __contains__(self, key: object) -> bool:
        return key in self._lru

    def namespace_size(self, namespace: str) -> int:
        """Entries held in one namespace."""
        entries = self._namespaces.get(namespace)
        return len(entries) if entries is not None else 0

    def add(self, namespace: str, key: str, text: str, vector: Vector) -> None:
        """Add or replace an entry, evicting the least recently used one past `max_entries`.

        Args:
            namespace: see `stellara.cache.key.semantic_namespace`.
            key: the cache key of the stored answer; unique across namespaces.
            text: the prompt text the vector was computed from (the guard reads it).
            vector: a unit-length vector of `dimension` floats.
        """
        if vector.shape != (self.dimension,):
            raise ValueError(f"expected a vector of shape ({self.dimension},), got {vector.shape}")
        previous = self._lru.get(key)
        if previous is not None and previous != namespace:
            self.remove(key)
        self._namespaces.setdefault(namespace, _Namespace(self.dimension)).add(key, text, vector)
        self._lru[key] = namespace
        self._lru.move_to_end(key)
        while len(self._lru) > self.max_entries:
            self.remove(next(iter(self._lru)))

    def candidates(
        self, namespace: str, vector: Vector, threshold: float, limit: int = 3
    ) -> list[Match]:
        """The best `limit` entries of a namespace scoring at least `threshold`, best first.

        Use this when a verification step may reject the best one; `search` otherwise.
        """
        entries = self._namespaces.get(namespace)
        return entries.best(vector, threshold, limit) if entries is not None else []

    def search(
        self, namespace: str, vector: Vector, threshold: float
    ) -> tuple[str, float, str] | None:
        """The single best entry at or above `threshold`: (key, score, text), or None."""
        found = self.candidates(namespace, vector, threshold, limit=1)
        return (found[0].key, found[0].score, found[0].text) if found else None

    def touch(self, key: str) -> None:
        """Mark an entry as just used, so that eviction takes others first."""
        if key in self._lru:
            self._lru.move_to_end(key)

    def remove(self, key: str) -> bool:
        """Drop an entry (e.g. when its stored answer expired). False if it was not there."""
        namespace = self._lru.pop(key, None)
        if namespace is None:
            return False
        entries = self._namespaces[namespace]
        entries.remove(key)
        if not entries:
            del self._namespaces[namespace]
        return True

    def clear(self, namespace: str | None = None) -> None:
        """Drop one namespace's entries, or all entries when `namespace` is None."""
        if namespace is None:
            self._namespaces.clear()
            self._lru.clear()
            return
        entries = self._namespaces.pop(namespace, None)
        for key in entries.keys if entries is not None else ():
            del self._lru[key]


@dataclass(frozen=True, slots=True)
class SemanticCacheStats:
    """Counters since the cache was built; latencies over the last 1,024 lookups.

    Attributes:
        entries: entries in the index.
        lookups: calls to `lookup`.
        hits: lookups that returned a match.
        guard_trips: candidates above the threshold that the guard vetoed.
        trips_by_rule: `guard_trips` split by the guard rule that fired.
        embed_ms_p50: median time to embed one lookup text (in its worker thread).
        lookup_ms_p50: median time of a whole lookup: embedding, thread hop, search, guard.
    """

    entries: int
    lookups: int
    hits: int
    guard_trips: int
    trips_by_rule: dict[str, int] = field(default_factory=dict)
    embed_ms_p50: float | None = None
    lookup_ms_p50: float | None = None


_LATENCY_WINDOW = 1024
_RECENT_VECTORS = 256


class SemanticCache:
    """Finds a cached answer for a prompt that means the same as one seen before.

    The pipeline calls `lookup` with the last user turn; on a miss, once the upstream answer
    is stored under `key`, it calls `add` with the same text (the vector computed by the
    lookup is reused, not recomputed). Embedding runs in a worker thread through
    `asyncio.to_thread`, so the event loop only does the search and the guard.

    Args:
        embedder: turns texts into unit vectors (`SentenceEmbedder` in production).
        threshold: cosine similarity a candidate needs before the guard sees it.
        max_entries: entries kept across all namespaces (least recently used evicted).
        candidates: how many of the best candidates the guard may examine per lookup; a
            near twin with a flipped word ("turn off" for "turn on") must not hide a true
            paraphrase just behind it.
        guard: returns why two texts differ, or None; `stellara.cache.guard.mismatch`.
        clock: measures the latencies reported in `stats`.
    """

    def __init__(
        self,
        embedder: Embedder,
        *,
        threshold: float = DEFAULT_THRESHOLD,
        max_entries: int = 10_000,
        candidates: int = 3,
        guard: Callable[[str, str], str | None] = mismatch,
        clock: Clock | None = None,
    ) -> None:
        self.threshold = threshold
        self.index = SemanticIndex(max_entries)
        self._embedder = embedder
        self._candidates = candidates
        self._guard = guard
        self._clock = clock or SystemClock()
        self._recent: OrderedDict[str, Vector] = OrderedDict()
        self._embed_ms: deque[float] = deque(maxlen=_LATENCY_WINDOW)
        self._lookup_ms: deque[float] = deque(maxlen=_LATENCY_WINDOW)
        self._lookups = 0
        self._hits = 0
        self._trips: Counter[str] = Counter()

    async def lookup(self, namespace: str, text: str) -> Match | None:
        """The best cached entry for `text` that passes the threshold and the guard.

        Args:
            namespace: see `stellara.cache.key.semantic_namespace`; entries of other namespaces
                never match.
            text: the last user turn.

        Returns:
            The match (its `key` locates the stored answer), or None on a miss.
        """
        started = self._clock.monotonic()
        self._lookups += 1
        vector = await self._embed(text)
        found = None
        for candidate in self.index.candidates(namespace, vector, self.threshold, self._candidates):
            reason = self._guard(text, candidate.text)
            if reason is None:
                found = candidate
                break
            self._trips[reason] += 1
        if found is not None:
            self._hits += 1
            self.index.touch(found.key)
        self._lookup_ms.append((self._clock.monotonic() - started) * 1000)
        return found

    async def add(self, namespace: str, key: str, text: str) -> None:
        """Index `text` under `key` (whose answer the caller has stored) in `namespace`."""
        self.index.add(namespace, key, text, await self._embed(text, record=False))

    def restore(self, namespace: str, key: str, text: str, vector: bytes) -> None:
        """Re-index an entry whose vector was persisted as float32 bytes (`vector_bytes_of`);
        raises `ValueError` when they are not whole float32s of the index's dimension."""
        self.index.add(namespace, key, text, np.frombuffer(vector, dtype=np.float32))

    def remove(self, key: str) -> bool:
        """Forget an entry, e.g. when its stored answer expired or was deleted."""
        return self.index.remove(key)

    def clear(self, namespace: str | None = None) -> None:
        """Forget one namespace's entries, or every entry."""
        self.index.clear(namespace)
        if namespace is None:
            self._recent.clear()

    async def warm_up(self) -> None:
        """Load the model now (in a thread) rather than on the first lookup."""
        await asyncio.to_thread(self._embedder.embed, ["warm up"])

    def vector_bytes_of(self, text: str) -> bytes | None:
        """The vector computed for `text` by a recent lookup or add, as float32 bytes for
        persisting it."""
        vector = self._recent.get(text)
        return None if vector is None else vector.astype(np.float32, copy=False).tobytes()

    def stats(self) -> SemanticCacheStats:
        """A snapshot of the counters and latencies."""

        def median(samples: deque[float]) -> float | None:
            return statistics.median(samples) if samples else None

        return SemanticCacheStats(
            entries=len(self.index),
            lookups=self._lookups,
            hits=self._hits,
            guard_trips=sum(self._trips.values()),
            trips_by_rule=dict(self._trips),
            embed_ms_p50=median(self._embed_ms),
            lookup_ms_p50=median(self._lookup_ms),
        )

    async def _embed(self, text: str, *, record: bool = True) -> Vector:
        known = self._recent.get(text)
        if known is not None:
            self._recent.move_to_end(text)
            return known
        started = self._clock.monotonic()
        vector: Vector = (await asyncio.to_thread(self._embedder.embed, [text]))[0]
        if record:
            self._embed_ms.append((self._clock.monotonic() - started) * 1000)
        self._recent[text] = vector
        while len(self._recent) > _RECENT_VECTORS:
            self._recent.popitem(last=False)
        return vector
