"""The L1 LRU: TTL, stale retention, entry and byte bounds, clearing by scope or model."""

from __future__ import annotations

from stellara.cache.l1 import CachedAnswer, L1Cache
from stellara.testing import ManualClock


def answer(body: bytes = b"x" * 10, ttl: float = 60, stale: float = 600, **kw: str) -> CachedAnswer:
    return CachedAnswer(
        body, 1000 + ttl, 1000 + stale, kw.get("scope", "alice"), kw.get("model", "m")
    )


def test_l1_get_returns_fresh_answer_and_counts_hits() -> None:
    cache = L1Cache(10, 1000, ManualClock(1000.0))
    cache.put("k", answer())
    assert cache.get("k") is not None
    assert cache.get("missing") is None
    assert (cache.stats.hits, cache.stats.misses) == (1, 1)


def test_l1_expired_answer_is_a_miss_but_kept_for_degraded_use() -> None:
    clock = ManualClock(1000.0)
    cache = L1Cache(10, 1000, clock)
    cache.put("k", answer(ttl=60, stale=600))
    clock.advance(61)
    assert cache.get("k") is None
    assert cache.get("k", allow_stale=True) is not None
    clock.advance(600)
    assert cache.get("k", allow_stale=True) is None
    assert len(cache) == 0


def test_l1_evicts_least_recently_used_past_max_entries() -> None:
    cache = L1Cache(2, 1000, ManualClock(1000.0))
    cache.put("a", answer())
    cache.put("b", answer())
    cache.get("a")
    cache.put("c", answer())
    assert cache.get("b") is None
    assert cache.get("a") is not None
    assert cache.stats.evictions == 1


def test_l1_bounds_bytes() -> None:
    cache = L1Cache(100, 25, ManualClock(1000.0))
    for key in "abc":
        cache.put(key, answer(b"x" * 10))
    assert len(cache) == 2
    assert cache.size_bytes == 20
    cache.put("huge", answer(b"x" * 26))
    assert cache.get("huge") is None


def test_l1_clear_by_scope_and_model() -> None:
    cache = L1Cache(10, 1000, ManualClock(1000.0))
    cache.put("1", answer(scope="alice", model="m"))
    cache.put("2", answer(scope="bob", model="m"))
    cache.put("3", answer(scope="alice", model="n"))
    assert cache.clear(scope="alice", model="m") == 1
    assert cache.clear(model="m") == 1
    assert cache.clear() == 1
    assert cache.size_bytes == 0
