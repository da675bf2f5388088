"""Token counting micro-benchmark: the time to count a 1 KB prompt, per encoding.

Prints the one-time load of each shipped BPE file, then the median time of `count_text` on
1 KB of English prose and of `count_prompt` on a chat request carrying the same text. The issue
that introduced the counter budgets about 0.1 ms for the 1 KB count.

Usage::

    .venv/bin/python benchmarks/tokens.py [--repeat 2000]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial

from stellara.schema.chat import ChatRequest, SystemMessage, UserMessage
from stellara.tokens import TokenCounter

SENTENCE = (
    "Stellara sits between applications and language model providers, routing each request, "
    "guarding it with quotas and retries, and accounting for every token it spends. "
)


def _prose(size: int) -> str:
    text = SENTENCE * (size // len(SENTENCE) + 1)
    return text[:size]


def _median_us(call: Callable[[], object], repeat: int) -> float:
    timings = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        timings.append(time.perf_counter() - start)
    return statistics.median(timings) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=2000)
    args = parser.parse_args()
    counter = TokenCounter()
    text = _prose(1024)
    request = ChatRequest(
        model="bench",
        messages=[SystemMessage(content="You are terse."), UserMessage(content=text)],
    )
    print(f"prompt: {len(text.encode())} bytes of English prose, median of {args.repeat} runs")
    for model in ("gpt-4o", "gpt-4"):
        start = time.perf_counter()
        encoding = counter.encoding(model)
        load_ms = (time.perf_counter() - start) * 1000
        tokens = counter.count_text(text, model)
        text_us = _median_us(partial(counter.count_text, text, model), args.repeat)
        prompt_us = _median_us(partial(counter.count_prompt, request, model), args.repeat)
        print(
            f"{encoding.name:12} load {load_ms:7.1f} ms | {tokens} tokens | "
            f"count_text {text_us:6.1f} us | count_prompt {prompt_us:6.1f} us"
        )


if __name__ == "__main__":
    main()
