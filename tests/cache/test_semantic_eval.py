"""The shipped evaluation set at the default threshold: the targets of the semantic cache."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib.resources import files

import numpy as np
import pytest

from stellara.cache.embedder import SentenceEmbedder
from stellara.cache.guard import same_question
from stellara.cache.semantic import DEFAULT_THRESHOLD


@dataclass(frozen=True)
class Outcome:
    a: str
    b: str
    is_paraphrase: bool
    is_hit: bool


@pytest.fixture(scope="module")
def outcomes() -> list[Outcome]:
    text = (files("stellara.cache") / "data" / "semantic_eval.jsonl").read_text("utf-8")
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    embedder = SentenceEmbedder()
    left = embedder.embed([r["a"] for r in rows])
    right = embedder.embed([r["b"] for r in rows])
    cosines = (left * right).sum(axis=1)
    return [
        Outcome(
            r["a"],
            r["b"],
            r["label"] == "paraphrase",
            bool(c >= DEFAULT_THRESHOLD) and same_question(r["a"], r["b"]),
        )
        for r, c in zip(rows, cosines, strict=True)
    ]


def test_eval_set_has_the_promised_size(outcomes: list[Outcome]) -> None:
    assert sum(o.is_paraphrase for o in outcomes) >= 150
    assert sum(not o.is_paraphrase for o in outcomes) >= 150


def test_eval_no_false_hit_on_hard_negatives(outcomes: list[Outcome]) -> None:
    false_hits = [(o.a, o.b) for o in outcomes if not o.is_paraphrase and o.is_hit]
    assert false_hits == []


def test_eval_recall_on_paraphrases_is_at_least_60_percent(outcomes: list[Outcome]) -> None:
    recall = np.mean([o.is_hit for o in outcomes if o.is_paraphrase])
    assert recall >= 0.60
