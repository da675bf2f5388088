"""The semantic cache engine: the vector index, the facade, and the shipped embedding model."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from stellara.cache.embedder import SentenceEmbedder
from stellara.cache.key import semantic_namespace
from stellara.cache.semantic import Match, SemanticCache, SemanticIndex

Vector = npt.NDArray[np.float32]


def unit(*values: float) -> Vector:
    """A unit vector in 384-d whose first components are `values`."""
    vector = np.zeros(384, dtype=np.float32)
    vector[: len(values)] = values
    return vector / np.linalg.norm(vector)


class FakeEmbedder:
    """Maps known texts to given vectors; records which thread each call ran in."""

    def __init__(self, vectors: dict[str, Vector]) -> None:
        self.vectors = vectors
        self.calls: list[str] = []
        self.threads: set[int] = set()

    def embed(self, texts: Sequence[str]) -> Vector:
        self.calls.extend(texts)
        self.threads.add(threading.get_ident())
        return np.stack([self.vectors[t] for t in texts])


def rounded(found: tuple[str, float, str] | None) -> tuple[str, float, str]:
    """A search result with its score rounded, for exact comparisons."""
    assert found is not None
    key, score, text = found
    return key, round(score, 3), text


# --- SemanticIndex -------------------------------------------------------------------------


def test_index_search_returns_best_entry_above_threshold() -> None:
    index = SemanticIndex(max_entries=10)
    index.add("ns", "a", "text a", unit(1, 0))
    index.add("ns", "b", "text b", unit(1, 1))
    assert rounded(index.search("ns", unit(1, 0.1), 0.9)) == ("a", 0.995, "text a")
    assert index.search("ns", unit(0, 0, 1), 0.5) is None


def test_index_candidates_are_ranked_and_limited() -> None:
    index = SemanticIndex(max_entries=10)
    for i, weight in enumerate([0.1, 0.5, 0.9, 0.3]):
        index.add("ns", f"k{i}", f"t{i}", unit(1, weight))
    found = index.candidates("ns", unit(1, 0), threshold=0.0, limit=2)
    assert [m.key for m in found] == ["k0", "k3"]
    assert found[0].score > found[1].score


def test_index_keeps_namespaces_apart() -> None:
    index = SemanticIndex(max_entries=10)
    index.add("tenant-a", "a", "same", unit(1))
    assert index.search("tenant-b", unit(1), 0.5) is None
    assert index.search("tenant-a", unit(1), 0.5) is not None


def test_index_evicts_least_recently_used_across_namespaces() -> None:
    index = SemanticIndex(max_entries=2)
    index.add("ns1", "old", "t", unit(1))
    index.add("ns2", "newer", "t", unit(0, 1))
    index.touch("old")  # served recently: "newer" is now the least recently used
    index.add("ns1", "newest", "t", unit(0, 0, 1))
    assert len(index) == 2
    assert "newer" not in index
    assert index.namespace_size("ns2") == 0
    assert {"old", "newest"} <= {k for k in ("old", "newest") if k in index}


def test_index_remove_keeps_other_rows_searchable() -> None:
    index = SemanticIndex(max_entries=10)
    for i in range(5):
        index.add("ns", f"k{i}", f"t{i}", unit(*([0.0] * i + [1.0])))
    assert index.remove("k1")
    assert not index.remove("k1")
    for i in (0, 2, 3, 4):  # the last row moved into k1's slot and must still be found
        found = index.search("ns", unit(*([0.0] * i + [1.0])), 0.99)
        assert rounded(found) == (f"k{i}", 1.0, f"t{i}")


def test_index_replaces_an_existing_key_even_across_namespaces() -> None:
    index = SemanticIndex(max_entries=10)
    index.add("ns1", "k", "first", unit(1))
    index.add("ns1", "k", "second", unit(0, 1))
    assert rounded(index.search("ns1", unit(0, 1), 0.9)) == ("k", 1.0, "second")
    index.add("ns2", "k", "moved", unit(1))
    assert len(index) == 1
    assert index.namespace_size("ns1") == 0
    assert index.search("ns2", unit(1), 0.9) is not None


def test_index_clear_one_namespace_or_all() -> None:
    index = SemanticIndex(max_entries=10)
    index.add("ns1", "a", "t", unit(1))
    index.add("ns2", "b", "t", unit(1))
    index.clear("ns1")
    assert "a" not in index
    assert "b" in index
    index.clear()
    assert len(index) == 0


def test_index_grows_past_its_initial_capacity() -> None:
    index = SemanticIndex(max_entries=100)
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((40, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    for i, vector in enumerate(vectors):
        index.add("ns", f"k{i}", "t", vector)
    assert all(index.search("ns", v, 0.99) is not None for v in vectors)


def test_index_rejects_wrong_shapes_and_sizes() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        SemanticIndex(max_entries=0)
    with pytest.raises(ValueError, match="shape"):
        SemanticIndex().add("ns", "k", "t", np.zeros(10, dtype=np.float32))


def test_namespace_is_stable_and_separates_contexts() -> None:
    first = semantic_namespace("acme", "gpt-4o", "system: be brief")
    assert first == semantic_namespace("acme", "gpt-4o", "system: be brief")
    assert first.startswith("acme:gpt-4o:")
    assert first != semantic_namespace("acme", "gpt-4o", "system: be verbose")
    assert first != semantic_namespace("acme", "gpt-4o-mini", "system: be brief")


# --- SemanticCache with a fake embedder ----------------------------------------------------

CACHED = "Turn on the kitchen lights"
PARAPHRASE = "Switch the kitchen lights on"
FLIPPED = "Turn off the kitchen lights"


@pytest.fixture
def fake() -> FakeEmbedder:
    return FakeEmbedder(
        {
            CACHED: unit(1, 0),
            PARAPHRASE: unit(1, 0.1),
            FLIPPED: unit(1, 0.09),
            "unrelated": unit(0, 1),
        }
    )


async def test_cache_serves_a_paraphrase(fake: FakeEmbedder) -> None:
    cache = SemanticCache(fake, threshold=0.9)
    await cache.add("ns", "key-1", CACHED)
    match = await cache.lookup("ns", PARAPHRASE)
    assert match is not None
    assert match == Match("key-1", match.score, CACHED)
    assert match.score == pytest.approx(0.995, abs=1e-3)
    stats = cache.stats()
    assert (stats.entries, stats.lookups, stats.hits, stats.guard_trips) == (1, 1, 1, 0)
    assert stats.embed_ms_p50 is not None
    assert stats.lookup_ms_p50 is not None


async def test_cache_guard_vetoes_a_flipped_twin_and_counts_it(fake: FakeEmbedder) -> None:
    cache = SemanticCache(fake, threshold=0.9)
    await cache.add("ns", "key-1", CACHED)
    assert await cache.lookup("ns", FLIPPED) is None
    stats = cache.stats()
    assert stats.guard_trips == 1
    assert stats.trips_by_rule == {"antonym": 1}
    assert stats.hits == 0


async def test_cache_looks_past_a_vetoed_best_candidate(fake: FakeEmbedder) -> None:
    # FLIPPED is closer to the query than CACHED, but the guard refuses it.
    cache = SemanticCache(fake, threshold=0.9)
    await cache.add("ns", "off", FLIPPED)
    await cache.add("ns", "on", CACHED)
    match = await cache.lookup("ns", PARAPHRASE)
    assert match is not None
    assert match.key == "on"
    assert cache.stats().guard_trips == 1


async def test_cache_misses_below_threshold_and_in_other_namespaces(fake: FakeEmbedder) -> None:
    cache = SemanticCache(fake, threshold=0.9)
    await cache.add("ns", "key-1", CACHED)
    assert await cache.lookup("ns", "unrelated") is None
    assert await cache.lookup("other", PARAPHRASE) is None
    assert cache.stats().guard_trips == 0


async def test_cache_embeds_off_the_event_loop_and_reuses_the_lookup_vector(
    fake: FakeEmbedder,
) -> None:
    cache = SemanticCache(fake)
    assert await cache.lookup("ns", CACHED) is None
    await cache.add("ns", "key-1", CACHED)  # after the miss: same text, no second embedding
    assert fake.calls == [CACHED]
    assert threading.get_ident() not in fake.threads
    assert cache.vector_bytes_of(CACHED) == fake.vectors[CACHED].astype(np.float32).tobytes()


async def test_cache_remove_restore_and_clear(fake: FakeEmbedder) -> None:
    cache = SemanticCache(fake, threshold=0.9)
    cache.restore("ns", "key-1", CACHED, fake.vectors[CACHED].tobytes())
    assert await cache.lookup("ns", PARAPHRASE) is not None
    assert cache.remove("key-1")
    assert await cache.lookup("ns", PARAPHRASE) is None
    cache.restore("ns", "key-2", CACHED, fake.vectors[CACHED].tobytes())
    cache.clear()
    assert cache.stats().entries == 0


async def test_cache_lookups_run_concurrently(fake: FakeEmbedder) -> None:
    cache = SemanticCache(fake, threshold=0.9)
    await cache.add("ns", "key-1", CACHED)
    results = await asyncio.gather(*(cache.lookup("ns", PARAPHRASE) for _ in range(8)))
    assert all(r is not None and r.key == "key-1" for r in results)
    assert cache.stats().hits == 8


# --- The shipped model ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def embedder() -> SentenceEmbedder:
    model = SentenceEmbedder()
    model.load()
    return model


def test_embedder_loads_without_the_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the embedder tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # even with the hub allowed, nothing is asked
    fresh = SentenceEmbedder()
    vectors = fresh.embed(["hello world"])
    assert fresh.is_loaded
    assert vectors.shape == (1, 384)


def test_embedder_matches_the_reference_vector(embedder: SentenceEmbedder) -> None:
    # The first components sentence-transformers gives for this sentence with
    # all-MiniLM-L6-v2 (as published in the model's usage examples). The shipped matrices are
    # float16 (scripts/vendor_minilm.py), which moves a component by up to ~4e-5 here.
    reference = [0.0676569, 0.0634959, 0.0487131, 0.0793050, 0.0374480, 0.0026528]
    vector = embedder.embed(["This is an example sentence"])[0]
    assert vector.dtype == np.float32
    assert float(np.linalg.norm(vector)) == pytest.approx(1.0, abs=1e-5)
    assert vector[:6] == pytest.approx(reference, abs=1e-4)


def test_embedder_batches_agree_with_single_calls(embedder: SentenceEmbedder) -> None:
    texts = ["short", "a much longer prompt, so the batch needs padding for the short one", ""]
    batch = embedder.embed(texts)
    singles = np.vstack([embedder.embed([t]) for t in texts])
    assert np.abs(batch - singles).max() < 1e-5
    assert embedder.embed([]).shape == (0, 384)


def test_embedder_is_safe_to_call_from_threads(embedder: SentenceEmbedder) -> None:
    texts = [f"question number {i} about databases" for i in range(8)]
    expected = embedder.embed(texts)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda t: embedder.embed([t])[0], texts))
    assert np.abs(np.stack(results) - expected).max() < 1e-5


def test_embedder_similarities_behave(embedder: SentenceEmbedder) -> None:
    a, b, c = embedder.embed(
        [
            "How do I reverse a list in Python?",
            "What's the way to reverse a Python list?",
            "What is the capital of France?",
        ]
    )
    assert float(a @ b) > 0.8
    assert float(a @ c) < 0.3


async def test_cache_with_real_model_hits_paraphrase_not_negation(
    embedder: SentenceEmbedder,
) -> None:
    cache = SemanticCache(embedder)
    await cache.add("ns", "key-1", "How do I enable dark mode in Windows 11?")
    hit = await cache.lookup("ns", "How can I turn on dark mode on Windows 11?")
    assert hit is not None
    assert hit.key == "key-1"
    assert await cache.lookup("ns", "How do I disable dark mode in Windows 11?") is None
    assert await cache.lookup("ns", "How do I enable dark mode in Windows 10?") is None
    assert cache.stats().guard_trips == 2
