"""How much of one request the tokenizer reads: a bounded amount, whatever the request holds.

Counting runs on the event loop before a call (limits reserve the estimate, the `cost`
strategy ranks by it), so its cost must not grow with what a client sends: one 3 MB "word"
took the tokenizer 1.5 s, and 110,000 tiny content blocks 60-95 ms. A `BoundedCount` collects
a request's texts, then counts them within two budgets:

- `VISITED_ITEMS` items (messages, parts, tool calls, tools) are looked at. Of a longer list,
  items spread evenly across it are, and its characters and fixed tokens are scaled up to
  the whole list.
- `COUNTED_BYTES` of text (in UTF-8, what the tokenizer reads) are tokenized. When the texts
  are larger, the tokenizer reads `SAMPLES` windows spread evenly across all of them, and the
  rate of tokens per character found there is applied to the whole.

A request within both budgets is counted exactly, as before they existed.

The tokenizer never sees more than `SLICE_CHARS` characters in one call either: its
pre-tokenizer and merges are superlinear on a long run without spaces (and a 1 MB run of
spaces overflows its regex stack). Text is cut before a space that follows a non-space,
where both encodings' pre-tokenizers cut anyway, so the counts of the pieces add up to the
count of the whole; only a run longer than a slice is cut inside, and counted approximately.
Sample windows start and end at such places too.
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

import tiktoken

T = TypeVar("T")

# 32 KiB is ~8,000 tokens of English, counted in 1-3 ms; the slowest text per byte measured
# (runs of spaces, random CJK or emoji) takes 2-3 times as long.
COUNTED_BYTES = 32 * 1024
# Looking at a message costs 2-4 µs: a few ms for 1,024, more than most conversations hold.
VISITED_ITEMS = 1024
SAMPLES = 32  # windows of 1 KiB, spread over the texts when they pass COUNTED_BYTES
SLICE_CHARS = 4096
# The last non-space followed by a space (greedy: found by backtracking from the end).
_LAST_WORD_END = re.compile(r".*\S( )", re.DOTALL)
_WORD_END = re.compile(r"\S( )")  # a non-space followed by a space


class BoundedCount:
    """One request's tokens, within the budgets of the module docstring.

    Use one per request: `each` walks its lists, the visitor adds `text` and `fixed` tokens,
    and `total` counts what was collected.
    """

    __slots__ = ("_chars", "_encoding", "_fixed", "_texts", "_visits_left")

    def __init__(self, encoding: tiktoken.Encoding) -> None:
        self._encoding = encoding
        self._texts: list[str] = []
        self._chars = 0.0  # of the texts collected, and of the items not looked at
        self._fixed = 0.0  # tokens known without the tokenizer (framing, images)
        self._visits_left = VISITED_ITEMS

    def text(self, text: str) -> None:
        """Count `text` (special-token text such as `<|endoftext|>` as the plain text it is,
        as providers treat it in user input)."""
        if text:
            self._texts.append(text)
            self._chars += len(text)

    def fixed(self, tokens: float) -> None:
        """Count `tokens` known without the tokenizer."""
        self._fixed += tokens

    def each(self, items: Sequence[T], visit: Callable[[T], object]) -> None:
        """`visit` each of `items` while the visit budget lasts; of a longer list, items
        spread evenly across it (one at least), counted as standing for the rest."""
        step = -(-len(items) // max(self._visits_left, 1))
        seen = items[::step] if step > 1 else items
        chars, fixed = self._chars, self._fixed
        for item in seen:
            self._visits_left -= 1
            visit(item)
        if len(seen) < len(items):
            scale = len(items) / len(seen) - 1
            self._chars += (self._chars - chars) * scale
            self._fixed += (self._fixed - fixed) * scale

    def total(self) -> int:
        """The tokens of everything collected: counted, or estimated past the budgets."""
        texts = self._texts
        if _fit(texts):
            tokens, counted = sum(map(self._tokenize, texts)), sum(map(len, texts))
        else:
            tokens, counted = self._sample()
        per_char = tokens / counted if counted else 0.0
        return round(self._fixed + tokens + per_char * (self._chars - counted))

    def _sample(self) -> tuple[int, int]:
        """Tokens and characters of `SAMPLES` windows spread evenly over the texts, each of
        `COUNTED_BYTES / SAMPLES` bytes (in UTF-8) at most."""
        texts = self._texts
        ends = list(itertools.accumulate(map(len, texts)))
        step = ends[-1] / SAMPLES
        tokens = chars = 0
        for sample in range(SAMPLES):
            for piece in _window(texts, ends, int((sample + 0.5) * step)):
                tokens += self._tokenize(piece)
                chars += len(piece)
        return tokens, chars

    def _tokenize(self, text: str) -> int:
        encode = self._encoding.encode_ordinary
        if len(text) <= SLICE_CHARS:
            return len(encode(text))
        return sum(len(encode(piece)) for piece in slices(text))


def slices(text: str) -> Iterator[str]:
    """`text` in pieces of at most `SLICE_CHARS` characters, cut where the tokenizer's
    pre-split cuts anyway whenever a piece has such a place (see the module docstring)."""
    start = 0
    while len(text) - start > SLICE_CHARS:
        end = _cut(text, start, start + SLICE_CHARS)
        yield text[start:end]
        start = end
    yield text[start:]


def _window(texts: list[str], ends: list[int], at: int) -> Iterator[str]:
    """`COUNTED_BYTES / SAMPLES` bytes of `texts` from the `at`-th character of them all, in
    pieces of one text each, which begin and end where the tokenizer cuts (or where their text
    does): each piece counts the tokens its text has there, as counting all of it would."""
    index = bisect.bisect_right(ends, at)
    left = COUNTED_BYTES // SAMPLES
    start = at - (ends[index] - len(texts[index]))
    begin = _WORD_END.search(texts[index], start, start + left // 2)
    if begin is not None:
        start = begin.start(1)
    while left > 0 and index < len(texts):
        text = texts[index]
        piece = text[start : start + left]
        size = _utf8_size(piece)
        if start + len(piece) < len(text) or size > left:
            end = start + len(piece) * min(left, size) // size
            yield text[start : _cut(text, start, end)]
            return
        yield piece
        left -= size
        index += 1
        start = 0


def _cut(text: str, start: int, end: int) -> int:
    """Where to end a piece of `text` that starts at `start` and may not pass `end`: before
    the last space there that follows a non-space, else at `end`."""
    last = _LAST_WORD_END.match(text, start, end + 1)
    return last.start(1) if last is not None else end


def _fit(texts: list[str]) -> bool:
    """Whether `texts` hold `COUNTED_BYTES` or less in UTF-8; measured no further than that."""
    left = COUNTED_BYTES
    for text in texts:
        left -= len(text) if text.isascii() or len(text) > left else _utf8_size(text)
        if left < 0:
            return False
    return True


def _utf8_size(text: str) -> int:
    """`text`'s size in UTF-8 (the bytes the tokenizer reads), at a constant cost for ASCII."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
