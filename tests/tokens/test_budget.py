"""Token counts bounded in time for any input, and exact for prompts within the budgets."""

from __future__ import annotations

import time
from pathlib import Path

import msgspec
import pytest

from stellara.schema.chat import ChatRequest, request_decoder
from stellara.tokens import TokenCounter
from stellara.tokens.budget import COUNTED_BYTES, SLICE_CHARS, VISITED_ITEMS, slices

MODELS = ("gpt-4o", "gpt-4")  # o200k_base and cl100k_base
DOCS = sorted((Path(__file__).resolve().parents[2] / "docs").rglob("*.md"))
# Generous, so a loaded machine cannot fail it; the real figures are printed (`-s`).
MAX_ESTIMATE_S = 0.050


@pytest.fixture(scope="module")
def counter() -> TokenCounter:
    counter = TokenCounter()
    counter.preload(MODELS)
    return counter


def _request(content: object, *, copies: int = 1) -> ChatRequest:
    messages = [{"role": "user", "content": content}] * copies
    return request_decoder.decode(msgspec.json.encode({"model": "m", "messages": messages}))


def _exact(counter: TokenCounter, text: str, model: str) -> int:
    return len(counter.encoding(model).encode_ordinary(text))


def _docs_text() -> str:
    return "\n\n".join(path.read_text(encoding="utf-8") for path in DOCS)


def _prose_and_code() -> str:
    """Over a megabyte of the repository's documentation and source, as a long prompt."""
    sources = sorted((Path(__file__).resolve().parents[2] / "src").rglob("*.py"))
    return _docs_text() + "".join(path.read_text(encoding="utf-8") for path in sources)


def test_slices_cover_the_text_in_bounded_pieces() -> None:
    text = "word " * 5000 + "x" * 20_000 + " tail"
    pieces = list(slices(text))
    assert "".join(pieces) == text
    assert max(len(piece) for piece in pieces) <= SLICE_CHARS


@pytest.mark.parametrize("model", MODELS)
def test_slices_of_prose_and_code_count_as_the_whole(counter: TokenCounter, model: str) -> None:
    """Cut before a space that follows a non-space, where the tokenizers cut anyway."""
    text = _prose_and_code()
    encode = counter.encoding(model).encode_ordinary
    assert len(list(slices(text))) > 20
    assert sum(len(encode(piece)) for piece in slices(text)) == len(encode(text))


@pytest.mark.parametrize("model", MODELS)
def test_prompt_within_the_budgets_is_counted_exactly(counter: TokenCounter, model: str) -> None:
    text = _docs_text().encode("ascii", "ignore").decode()[: COUNTED_BYTES - 100]
    # 3 framing + "user" (1) + the text + 3 reply priming
    assert counter.count_prompt(_request(text), model) == 7 + _exact(counter, text, model)


@pytest.mark.parametrize("model", MODELS)
def test_long_prompt_is_estimated_within_three_percent(counter: TokenCounter, model: str) -> None:
    text = _prose_and_code()
    assert len(text) > 30 * COUNTED_BYTES
    exact = _exact(counter, text, model)
    assert counter.count_text(text, model) == pytest.approx(exact, rel=0.03)
    pieces = [text[at : at + 500] for at in range(0, len(text), 500)]
    assert len(pieces) > VISITED_ITEMS
    exact_parts = sum(_exact(counter, piece, model) for piece in pieces)
    parts = [{"type": "text", "text": piece} for piece in pieces]
    estimate = counter.count_prompt(_request(parts), model)
    assert estimate == pytest.approx(7 + exact_parts, rel=0.03)


def test_many_short_texts_past_the_budgets_keep_their_sum(counter: TokenCounter) -> None:
    """Fractions of a token are carried, not rounded per text."""
    texts = ["hello there"] * 20_000
    assert counter.count_texts(texts, "gpt-4o") == pytest.approx(40_000, rel=0.001)
    request = _request("hello there", copies=20_000)
    assert counter.count_prompt(request, "gpt-4o") == 20_000 * (3 + 1 + 2) + 3


@pytest.mark.parametrize(
    ("name", "request_"),
    [
        pytest.param("3 MB word", _request("a" * 3_000_000), id="3mb-word"),
        pytest.param(
            "110,000 blocks", _request([{"type": "text", "text": "hi"}] * 110_000), id="110k-parts"
        ),
        pytest.param("1 MB of spaces", _request(" " * 1_000_000), id="1mb-spaces"),
        pytest.param(
            "1M CJK characters",
            _request("".join(chr(0x4E00 + (i * 7919) % 20_000) for i in range(1_000_000))),
            id="1m-cjk",
        ),
        pytest.param("20,000 messages", _request("hi there", copies=20_000), id="20k-messages"),
    ],
)
@pytest.mark.parametrize("model", MODELS)
def test_hostile_prompt_is_estimated_in_bounded_time(
    counter: TokenCounter, model: str, name: str, request_: ChatRequest
) -> None:
    started = time.perf_counter()
    tokens = counter.count_prompt(request_, model)
    elapsed = time.perf_counter() - started
    print(f"{model} {name}: {tokens} tokens estimated in {elapsed * 1000:.2f} ms")
    assert tokens > 0
    assert elapsed < MAX_ESTIMATE_S


def test_a_run_of_spaces_the_tokenizer_cannot_take_whole_is_counted(
    counter: TokenCounter,
) -> None:
    """tiktoken's pre-tokenizer overflows its stack on a 1 MB run of spaces (a panic)."""
    assert counter.count_text(" " * 1_000_000, "gpt-4o") == pytest.approx(7_813, rel=0.01)
