"""Anthropic's prompt caching, accounted as the real API accounts it, for the simulator.

A request is a sequence of blocks in the order Anthropic caches them: tools, then system, then
messages. A block with ``cache_control`` is a *breakpoint*: the prompt up to and including it
may be cached, for its ``ttl`` ("5m", the default, or "1h"), when it is at least the model's
minimum cacheable length (:func:`minimum_tokens`); a shorter one is processed as plain input,
without an error, as the real API does. A request reads the longest prefix found in the cache,
looking at each breakpoint and up to :data:`LOOKBACK_BLOCKS` blocks before it (so a
conversation whose breakpoint moves forward still reads what the previous turn wrote); it
writes every breakpoint after that. ``input_tokens`` is what is neither read nor written.

Entries live in the simulator's memory and expire ``ttl`` after their last use; reading an
entry refreshes it.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

MAX_BREAKPOINTS = 4
"""The real API refuses a request with more blocks carrying ``cache_control``."""
LOOKBACK_BLOCKS = 20
"""How far before a breakpoint the real API looks for a cached prefix."""
TTL_S = {"5m": 300.0, "1h": 3600.0}

_LARGER_MINIMUM = re.compile(r"claude-(haiku-4-5|opus-4-[56])")


def minimum_tokens(model: str) -> int:
    """The shortest prefix ``model`` caches: 1024 tokens for Sonnet and Opus, 2048 for Haiku,
    4096 for Haiku 4.5 and Opus 4.5 and 4.6 (Anthropic's prompt-caching guide)."""
    if _LARGER_MINIMUM.search(model):
        return 4096
    return 2048 if "haiku" in model else 1024


@dataclass(frozen=True, slots=True)
class Segment:
    """One block of the prompt: its tokens, the bytes its cache key covers, and its breakpoint
    TTL ("5m" or "1h") when it carries ``cache_control``."""

    tokens: int
    content: bytes
    ttl: str | None = None


@dataclass(frozen=True, slots=True)
class CacheUsage:
    """How a request's prompt tokens split: plain, read from the cache, written per TTL."""

    input_tokens: int
    read_tokens: int = 0
    written_5m_tokens: int = 0
    written_1h_tokens: int = 0

    @property
    def written_tokens(self) -> int:
        return self.written_5m_tokens + self.written_1h_tokens


class PromptCache:
    """The cache of one simulator: prefix key → (expiry, TTL).

    Args:
        clock: Seconds, monotonic; tests pass a fake one to expire entries.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._entries: dict[bytes, tuple[float, str]] = {}

    def account(self, model: str, segments: list[Segment], extra_tokens: int) -> CacheUsage:
        """Read and write the cache for one request's prompt and say how its tokens split.

        Args:
            model: The model asked; caches are per model.
            segments: The prompt's blocks in caching order.
            extra_tokens: Prompt tokens outside any block (the reply's priming).
        """
        now = self._clock()
        self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
        keys, ends = _prefix_keys(model, segments)
        total = (ends[-1] if ends else 0) + extra_tokens
        breakpoints = [at for at, segment in enumerate(segments) if segment.ttl is not None]
        read_at = self._longest_hit(keys, breakpoints)
        read = ends[read_at] if read_at >= 0 else 0
        if read_at >= 0:
            ttl = self._entries[keys[read_at]][1]
            self._entries[keys[read_at]] = (now + TTL_S[ttl], ttl)
        written = {"5m": 0, "1h": 0}
        written_to = read
        minimum = minimum_tokens(model)
        for at in breakpoints:
            if at <= read_at or ends[at] < minimum:
                continue
            ttl = segments[at].ttl or "5m"
            self._entries[keys[at]] = (now + TTL_S[ttl], ttl)
            written[ttl] += ends[at] - written_to
            written_to = ends[at]
        return CacheUsage(
            input_tokens=total - written_to,
            read_tokens=read,
            written_5m_tokens=written["5m"],
            written_1h_tokens=written["1h"],
        )

    def _longest_hit(self, keys: list[bytes], breakpoints: list[int]) -> int:
        """The index of the last block of the longest cached prefix, or -1."""
        for at in reversed(breakpoints):
            for back in range(at, max(at - LOOKBACK_BLOCKS, -1), -1):
                if keys[back] in self._entries:
                    return back
        return -1


def _prefix_keys(model: str, segments: list[Segment]) -> tuple[list[bytes], list[int]]:
    """Per block: the key of the prompt up to it, and the tokens up to it."""
    running = hashlib.sha256(model.encode())
    keys: list[bytes] = []
    ends: list[int] = []
    tokens = 0
    for segment in segments:
        running.update(len(segment.content).to_bytes(8, "big") + segment.content)
        keys.append(running.copy().digest())
        tokens += segment.tokens
        ends.append(tokens)
    return keys, ends
