"""The Anthropic simulator accounts prompt caching as the real API does: a breakpoint writes the
prefix up to it, a repeat reads it, short prefixes are not cached, entries expire, and more than
four breakpoints are refused."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anthropic
import pytest
from anthropic.types import TextBlockParam

from stellara.sim import SimConfig, start_simulator
from stellara.sim.anthropic_cache import PromptCache, Segment, minimum_tokens
from stellara.sim.text import count_tokens

MODEL = "claude-sonnet-4-5"
BOOK = "The quick brown fox jumps over the lazy dog. " * 120  # ~1350 tokens by the sim's count
EPHEMERAL: Any = {"type": "ephemeral"}


@pytest.fixture
async def client() -> AsyncIterator[anthropic.AsyncAnthropic]:
    simulator = await start_simulator(SimConfig())
    async with anthropic.AsyncAnthropic(base_url=simulator.url, api_key="x", max_retries=0) as c:
        yield c
    await simulator.close()


def system(ttl: str | None = None) -> list[TextBlockParam]:
    cache_control: Any = EPHEMERAL if ttl is None else {"type": "ephemeral", "ttl": ttl}
    return [{"type": "text", "text": BOOK, "cache_control": cache_control}]


async def ask(client: anthropic.AsyncAnthropic, question: str, **fields: Any) -> Any:
    return await client.messages.create(
        model=fields.pop("model", MODEL),
        max_tokens=50,
        messages=[{"role": "user", "content": question}],
        **fields,
    )


async def test_first_request_writes_and_the_repeat_reads(client: anthropic.AsyncAnthropic) -> None:
    first = (await ask(client, "Who jumps?", system=system())).usage
    book_tokens = count_tokens(BOOK)
    assert first.cache_creation_input_tokens == book_tokens
    assert first.cache_read_input_tokens == 0
    assert first.cache_creation is not None
    assert first.cache_creation.ephemeral_5m_input_tokens == book_tokens
    second = (await ask(client, "Who sleeps?", system=system())).usage
    assert second.cache_read_input_tokens == book_tokens
    assert second.cache_creation_input_tokens == 0
    # The question is neither read nor written: plain input, the same on both turns.
    assert second.input_tokens == first.input_tokens > 0


async def test_one_hour_ttl_is_reported_apart(client: anthropic.AsyncAnthropic) -> None:
    usage = (await ask(client, "Who jumps?", system=system("1h"))).usage
    assert usage.cache_creation is not None
    assert usage.cache_creation.ephemeral_1h_input_tokens == count_tokens(BOOK)
    assert usage.cache_creation.ephemeral_5m_input_tokens == 0


async def test_prefix_below_the_minimum_is_plain_input(client: anthropic.AsyncAnthropic) -> None:
    short: list[TextBlockParam] = [
        {"type": "text", "text": "Be brief.", "cache_control": EPHEMERAL}
    ]
    for _ in range(2):
        usage = (await ask(client, "Hi", system=short)).usage
        assert usage.cache_creation_input_tokens == usage.cache_read_input_tokens == 0


async def test_cache_is_per_model(client: anthropic.AsyncAnthropic) -> None:
    await ask(client, "Who jumps?", system=system())
    other = (await ask(client, "Who jumps?", system=system(), model="claude-opus-4-1")).usage
    assert other.cache_read_input_tokens == 0
    assert other.cache_creation_input_tokens == count_tokens(BOOK)


async def test_stream_reports_cache_use_in_message_start(client: anthropic.AsyncAnthropic) -> None:
    await ask(client, "Who jumps?", system=system())
    async with client.messages.stream(
        model=MODEL, max_tokens=50, system=system(), messages=[{"role": "user", "content": "Hm?"}]
    ) as stream:
        final = await stream.get_final_message()
    assert final.usage.cache_read_input_tokens == count_tokens(BOOK)


async def test_more_than_four_breakpoints_are_refused(client: anthropic.AsyncAnthropic) -> None:
    blocks: list[TextBlockParam] = [
        {"type": "text", "text": f"Part {n}.", "cache_control": EPHEMERAL} for n in range(5)
    ]
    with pytest.raises(anthropic.BadRequestError, match="maximum of 4 blocks"):
        await ask(client, "Hi", system=blocks)


async def test_request_level_cache_control_caches_the_whole_prompt(
    client: anthropic.AsyncAnthropic,
) -> None:
    first = (await ask(client, BOOK, cache_control=EPHEMERAL)).usage
    second = (await ask(client, BOOK, cache_control=EPHEMERAL)).usage
    assert first.cache_creation_input_tokens == second.cache_read_input_tokens > 1024


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def segments(*tokens: int, ttl_at: dict[int, str]) -> list[Segment]:
    return [Segment(n, f"block {at}".encode(), ttl_at.get(at)) for at, n in enumerate(tokens)]


def test_entries_expire_after_their_ttl_and_a_read_refreshes_them() -> None:
    clock = FakeClock()
    cache = PromptCache(clock)
    prompt = segments(2000, 10, ttl_at={0: "5m"})
    assert cache.account(MODEL, prompt, 3).written_5m_tokens == 2000
    clock.now = 299
    assert cache.account(MODEL, prompt, 3).read_tokens == 2000  # read: refreshed for 5 more
    clock.now = 500
    assert cache.account(MODEL, prompt, 3).read_tokens == 2000
    clock.now = 801
    usage = cache.account(MODEL, prompt, 3)
    assert (usage.read_tokens, usage.written_5m_tokens, usage.input_tokens) == (0, 2000, 13)


def test_a_moving_breakpoint_reads_what_the_previous_turn_wrote() -> None:
    cache = PromptCache(FakeClock())
    cache.account(MODEL, segments(1500, 20, ttl_at={1: "5m"}), 0)
    grown = segments(1500, 20, 30, 40, ttl_at={3: "5m"})
    usage = cache.account(MODEL, grown, 0)
    assert (usage.read_tokens, usage.written_5m_tokens, usage.input_tokens) == (1520, 70, 0)


def test_writes_split_by_the_ttl_of_the_breakpoint_that_ends_them() -> None:
    usage = PromptCache(FakeClock()).account(
        MODEL, segments(1100, 200, 5, ttl_at={0: "1h", 1: "5m"}), 0
    )
    assert (usage.written_1h_tokens, usage.written_5m_tokens, usage.input_tokens) == (1100, 200, 5)


@pytest.mark.parametrize(
    ("model", "minimum"),
    [("claude-sonnet-4-5", 1024), ("claude-3-5-haiku", 2048), ("claude-haiku-4-5", 4096)],
)
def test_minimum_cacheable_length_per_model(model: str, minimum: int) -> None:
    assert minimum_tokens(model) == minimum
