"""Semantic cache benchmark: hit quality on the shipped evaluation set, and latency.

Prints, for a range of similarity thresholds and for the configured default:

* precision (hits that are true paraphrases / all hits), recall on the paraphrase pairs and
  the false-hit rate on the hard-negative pairs, with and without the guard;
* at the default threshold, the false hits per kind of hard negative, and the guard rules
  that refused true paraphrases (the recall the guard costs);
* embedding latency p50/p99 of a short and of a ~500-character prompt (one text per call,
  as the cache embeds), the guard's time per pair, and the search latency at 1k and 10k
  entries in one namespace;
* the time of a whole `SemanticCache.lookup` that hits, with 10k entries indexed.

Each pair (a, b) is scored as the cache would see it: b is the cached prompt, a the new one.
The figures are in-sample: the guard's word lists were tuned on the `tune` split; the
`holdout` split was written afterwards and is reported on its own.

Usage::

    .venv/bin/python benchmarks/semantic.py [--repeat 200] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from importlib.resources import files

import numpy as np
import numpy.typing as npt

from stellara.cache.embedder import SentenceEmbedder
from stellara.cache.guard import mismatch
from stellara.cache.semantic import DEFAULT_THRESHOLD, SemanticCache, SemanticIndex

THRESHOLDS = (0.60, 0.65, 0.70, 0.75, 0.80, 0.85, 0.90, 0.95)
SHORT_PROMPT = "How do I reverse a list in Python?"
LONG_PROMPT = (
    "I am writing a small inventory service in Python with FastAPI and PostgreSQL. Requests "
    "that update stock levels sometimes time out under load, and the logs show lock waits "
    "on the items table. Each request opens a transaction, reads the current quantity, "
    "computes the new one and writes it back. How should I restructure these updates so "
    "that concurrent requests do not block each other, and should I use SELECT FOR UPDATE, "
    "optimistic locking with a version column, or an atomic UPDATE statement instead?"
)


@dataclass(frozen=True)
class Pair:
    a: str
    b: str
    is_paraphrase: bool
    kind: str
    split: str


@dataclass(frozen=True)
class Scored:
    pair: Pair
    cosine: float
    guard_reason: str | None


def load_pairs() -> list[Pair]:
    text = (files("stellara.cache") / "data" / "semantic_eval.jsonl").read_text("utf-8")
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    return [
        Pair(r["a"], r["b"], r["label"] == "paraphrase", r["kind"], r.get("split", "tune"))
        for r in rows
    ]


def score(pairs: Sequence[Pair], embedder: SentenceEmbedder) -> list[Scored]:
    left = embedder.embed([p.a for p in pairs])
    right = embedder.embed([p.b for p in pairs])
    cosines = (left * right).sum(axis=1)
    return [Scored(p, float(c), mismatch(p.a, p.b)) for p, c in zip(pairs, cosines, strict=True)]


def is_hit(item: Scored, threshold: float, *, guarded: bool) -> bool:
    return item.cosine >= threshold and (not guarded or item.guard_reason is None)


def quality_row(scored: Sequence[Scored], threshold: float, *, guarded: bool) -> str:
    para = [s for s in scored if s.pair.is_paraphrase]
    neg = [s for s in scored if not s.pair.is_paraphrase]
    true_hits = sum(is_hit(s, threshold, guarded=guarded) for s in para)
    false_hits = sum(is_hit(s, threshold, guarded=guarded) for s in neg)
    hits = true_hits + false_hits
    precision = f"{true_hits / hits:9.1%}" if hits else "      n/a"
    return (
        f"{threshold:9.2f} {'yes' if guarded else 'no':>5} {precision} "
        f"{true_hits / len(para):8.1%} ({true_hits:3}/{len(para)}) "
        f"{false_hits / len(neg):9.1%} ({false_hits:3}/{len(neg)})"
    )


def print_quality(scored: Sequence[Scored], title: str) -> None:
    print(f"\n{title}")
    print(f"{'threshold':>9} {'guard':>5} {'precision':>9} {'recall':>18} {'false hits':>19}")
    for threshold in sorted({*THRESHOLDS, DEFAULT_THRESHOLD}):
        for guarded in (False, True):
            mark = "  <- default" if threshold == DEFAULT_THRESHOLD and guarded else ""
            print(quality_row(scored, threshold, guarded=guarded) + mark)


def print_breakdown(scored: Sequence[Scored]) -> None:
    neg = [s for s in scored if not s.pair.is_paraphrase]
    print(f"\nHard negatives at the default threshold {DEFAULT_THRESHOLD:.2f}, per kind")
    print(f"{'kind':<12} {'pairs':>5} {'above threshold':>16} {'false hits with guard':>22}")
    for kind in sorted({s.pair.kind for s in neg}):
        group = [s for s in neg if s.pair.kind == kind]
        above = sum(s.cosine >= DEFAULT_THRESHOLD for s in group)
        passed = sum(is_hit(s, DEFAULT_THRESHOLD, guarded=True) for s in group)
        print(f"{kind:<12} {len(group):>5} {above:>16} {passed:>22}")
    refused = Counter(
        s.guard_reason
        for s in scored
        if s.pair.is_paraphrase and s.cosine >= DEFAULT_THRESHOLD and s.guard_reason
    )
    print("Paraphrases above the threshold that the guard refused, by rule:", dict(refused))
    caught = Counter(
        s.guard_reason for s in neg if s.cosine >= DEFAULT_THRESHOLD and s.guard_reason
    )
    print("Hard negatives above the threshold that the guard caught, by rule:", dict(caught))


def percentiles_ms(call: Callable[[], object], repeat: int) -> tuple[float, float]:
    timings = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        timings.append((time.perf_counter() - start) * 1000)
    timings.sort()
    return statistics.median(timings), timings[min(len(timings) - 1, int(len(timings) * 0.99))]


def random_unit(rows: int, rng: np.random.Generator) -> npt.NDArray[np.float32]:
    matrix = rng.standard_normal((rows, 384)).astype(np.float32)
    unit: npt.NDArray[np.float32] = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    return unit


def print_latency(embedder: SentenceEmbedder, pairs: Sequence[Pair], repeat: int) -> None:
    print("\nLatency (ms)                          p50      p99")
    for label, prompt in (("short", SHORT_PROMPT), ("long", LONG_PROMPT)):
        p50, p99 = percentiles_ms(partial(embedder.embed, [prompt]), repeat)
        print(f"embed {label} prompt ({len(prompt):3} chars)      {p50:7.2f}  {p99:7.2f}")
    start = time.perf_counter()
    for _ in range(5):
        for p in pairs:
            mismatch(p.a, p.b)
    guard_us = (time.perf_counter() - start) / (5 * len(pairs)) * 1e6
    print(f"guard, one pair (mean)                {guard_us / 1000:7.3f}")
    rng = np.random.default_rng(7)
    for size in (1_000, 10_000, 50_000):
        index = SemanticIndex(max_entries=size)
        for i, vector in enumerate(random_unit(size, rng)):
            index.add("ns", f"k{i}", "text", vector)
        query = random_unit(1, rng)[0]
        p50, p99 = percentiles_ms(partial(index.candidates, "ns", query, 0.8), repeat)
        print(f"search, {size:6,} entries                {p50:7.3f}  {p99:7.3f}")


async def lookup_latency(embedder: SentenceEmbedder, repeat: int) -> tuple[float, float]:
    cache = SemanticCache(embedder, max_entries=10_000)
    rng = np.random.default_rng(11)
    for i, vector in enumerate(random_unit(9_999, rng)):
        cache.restore("ns", f"k{i}", "filler", vector)
    await cache.add("ns", "hit", "How can I reverse a Python list?")
    prompts = [f"{SHORT_PROMPT[:-1]} number {i}?" for i in range(repeat)]
    timings = []
    for prompt in prompts:  # distinct texts, so that no vector is reused
        start = time.perf_counter()
        await cache.lookup("ns", prompt)
        timings.append((time.perf_counter() - start) * 1000)
    timings.sort()
    return statistics.median(timings), timings[int(len(timings) * 0.99) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=200, help="timed calls per figure")
    parser.add_argument("--quick", action="store_true", help="--repeat 30")
    args = parser.parse_args()
    repeat = 30 if args.quick else args.repeat

    embedder = SentenceEmbedder()
    start = time.perf_counter()
    embedder.load()
    print(f"model load: {(time.perf_counter() - start) * 1000:.0f} ms")
    pairs = load_pairs()
    scored = score(pairs, embedder)
    for split in sorted({p.split for p in pairs}):
        subset = [s for s in scored if s.pair.split == split]
        para = sum(s.pair.is_paraphrase for s in subset)
        print_quality(
            subset, f"Split '{split}': {para} paraphrases, {len(subset) - para} hard negatives"
        )
    if len({p.split for p in pairs}) > 1:
        print_quality(scored, f"All {len(scored)} pairs")
    print_breakdown(scored)
    print_latency(embedder, pairs, repeat)
    p50, p99 = asyncio.run(lookup_latency(embedder, repeat))
    print(f"lookup that hits, 10k entries         {p50:7.2f}  {p99:7.2f}   (target: 20 ms)")


if __name__ == "__main__":
    main()
