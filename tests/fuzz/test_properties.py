"""Hypothesis properties of the pure parts: the Anthropic translators round-trip a canonical
conversation, the exact-cache key canonicalises what its docstring promises and nothing more,
and the in-process limit store never admits past a limit and expires its windows exactly."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from stellara._json import encode
from stellara.cache.key import cache_key
from stellara.inbound.anthropic import to_chat_request
from stellara.providers.anthropic.chat import build_messages_body
from stellara.providers.anthropic.params import PARAMS as ANTHROPIC_PARAMS
from stellara.schema.chat import (
    AssistantMessage,
    ChatRequest,
    FunctionCall,
    FunctionDefinition,
    Message,
    NamedToolChoice,
    SystemMessage,
    TextPart,
    Tool,
    ToolCall,
    ToolChoiceFunction,
    ToolMessage,
    UserMessage,
)
from stellara.state.base import WindowLimit
from stellara.state.memory import EPSILON, MemoryLimitStore
from stellara.testing import ManualClock
from stellara.wire import anthropic as wire

FAST = settings(max_examples=150, deadline=None)

text = st.text(min_size=1, max_size=20)
ident = st.from_regex(r"[a-zA-Z][a-zA-Z0-9_]{0,15}", fullmatch=True)
json_value = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(ident, inner, max_size=3),
    max_leaves=6,
)
arguments = st.dictionaries(ident, json_value, max_size=3)

# ---------------------------------------------------------------- Anthropic round trip


@st.composite
def conversations(draw: st.DrawFn) -> list[Message]:
    """A conversation in the form both APIs express alike: one leading system prompt, user and
    assistant turns alternating, and every assistant tool call answered by tool messages."""
    messages: list[Message] = []
    if draw(st.booleans()):
        messages.append(SystemMessage(content=draw(text)))
    turns = draw(st.integers(1, 4))
    for turn in range(turns):
        messages.append(UserMessage(content=draw(text)))
        if turn == turns - 1 and draw(st.booleans()):
            break  # the conversation may end on the user's question
        calls = [
            ToolCall(f"call_{turn}_{at}", "function", FunctionCall(draw(ident), json.dumps(args)))
            for at, args in enumerate(draw(st.lists(arguments, max_size=2)))
        ]
        if calls:
            content = draw(st.none() | text)
            messages.append(AssistantMessage(content=content, tool_calls=calls))
            messages.extend(ToolMessage(content=draw(text), tool_call_id=c.id) for c in calls)
        messages.append(AssistantMessage(content=draw(text)))  # the answer
    return messages


def _normal(message: Message) -> Any:
    """What a message says, with tool-call arguments compared as JSON values."""
    data = msgspec.to_builtins(message)
    if isinstance(data.get("content"), list) and len(data["content"]) == 1:
        data["content"] = data["content"][0]["text"]  # one text part is its string
    for call in data.get("tool_calls") or ():
        call["function"]["arguments"] = json.loads(call["function"]["arguments"])
    return data


tool_choices = st.sampled_from(["auto", "required", "none", None, "named"])


@st.composite
def chat_requests(draw: st.DrawFn) -> ChatRequest:
    tools = draw(st.lists(ident, min_size=1, max_size=3, unique=True) | st.none())
    choice: Any = draw(tool_choices) if tools else None
    if choice == "named":
        assert tools is not None
        choice = NamedToolChoice("function", ToolChoiceFunction(draw(st.sampled_from(tools))))
    parallel = draw(st.sampled_from([None, False])) if choice not in (None, "none") else None
    unit = st.floats(0, 1, allow_nan=False)
    return ChatRequest(
        model="claude-x",
        messages=draw(conversations()),
        max_tokens=draw(st.integers(1, 100_000)),
        temperature=draw(st.none() | unit),
        top_p=draw(st.none() | unit),
        stop=draw(st.none() | st.lists(text, min_size=1, max_size=3)),
        user=draw(st.none() | ident),
        stream=draw(st.sampled_from([None, True])),
        tools=[
            Tool("function", FunctionDefinition(name, draw(st.none() | text), {"type": "object"}))
            for name in tools or ()
        ]
        or None,
        tool_choice=choice,
        parallel_tool_calls=parallel,
    )


def _round_trip(request: ChatRequest) -> ChatRequest:
    body = build_messages_body(request, request.model, default_max_tokens=1024)
    return to_chat_request(wire.request_decoder.decode(body))


@FAST
@given(chat_requests())
def test_anthropic_round_trip_keeps_messages_and_parameters(request: ChatRequest) -> None:
    back = _round_trip(request)

    assert [_normal(m) for m in back.messages] == [_normal(m) for m in request.messages]
    assert (back.model, back.max_tokens, back.temperature, back.top_p) == (
        request.model,
        request.max_tokens,
        request.temperature,
        request.top_p,
    )
    assert (back.stop, back.user, back.stream) == (request.stop, request.user, request.stream)
    assert back.tools == request.tools
    assert (back.tool_choice, back.parallel_tool_calls) == (
        request.tool_choice,
        request.parallel_tool_calls,
    )


@FAST
@given(st.lists(text, min_size=1, max_size=4), st.lists(text, min_size=1, max_size=3))
def test_anthropic_system_prompts_anywhere_become_one_leading_system(
    systems: list[str], users: list[str]
) -> None:
    messages: list[Message] = []
    for at, prompt in enumerate(systems):  # system prompts interleaved with user turns
        messages.append(SystemMessage(content=prompt))
        if at < len(users):
            messages.append(UserMessage(content=users[at]))
    messages.extend(UserMessage(content=u) for u in users[len(systems) :])

    back = _round_trip(ChatRequest(model="m", messages=messages))

    assert back.messages[0] == SystemMessage(content="\n\n".join(systems))
    # Consecutive user turns merge into one, their texts kept in order.
    (user,) = back.messages[1:]
    assert isinstance(user, UserMessage)
    if isinstance(user.content, str):
        assert [user.content] == users
    else:
        assert [part.text for part in user.content if isinstance(part, TextPart)] == users


@FAST
@given(st.floats(0, 2, allow_nan=False))
def test_anthropic_temperature_is_sent_as_given_up_to_one_and_unsupported_above(
    temperature: float,
) -> None:
    request = ChatRequest(model="m", messages=[UserMessage(content="hi")], temperature=temperature)
    unsupported = [u.name for u in ANTHROPIC_PARAMS.unsupported(request)]
    if temperature > 1:
        assert unsupported == ["temperature"]
    else:
        assert unsupported == []
        assert _round_trip(request).temperature == temperature


# ---------------------------------------------------------------- cache key


def _shuffled_json(value: Any, rnd: Any) -> Any:
    if isinstance(value, dict):
        keys = list(value)
        rnd.shuffle(keys)
        return {k: _shuffled_json(value[k], rnd) for k in keys}
    if isinstance(value, list):
        return [_shuffled_json(v, rnd) for v in value]
    return value


@FAST
@given(chat_requests(), st.randoms(use_true_random=False), text)
def test_cache_key_ignores_key_order_stream_and_bookkeeping(
    request: ChatRequest, rnd: Any, scope: str
) -> None:
    raw = msgspec.to_builtins(request)
    reordered = msgspec.convert(_shuffled_json(raw, rnd), ChatRequest)
    bookkeeping = msgspec.structs.replace(
        reordered,
        stream=not request.stream,
        user="someone-else",
        metadata={"trace": "x"},
        store=True,
        service_tier="flex",
    )
    assert cache_key(scope, request) == cache_key(scope, reordered)
    assert cache_key(scope, request) == cache_key(scope, bookkeeping)
    # Re-encoding the JSON with other whitespace decodes to the same request, hence same key.
    spaced = msgspec.json.decode(json.dumps(raw, indent=3).encode(), type=ChatRequest)
    assert cache_key(scope, spaced) == cache_key(scope, request)


@FAST
@given(text, text, text)
def test_cache_key_one_text_part_is_its_string(scope: str, prompt: str, other: str) -> None:
    as_string = ChatRequest(model="m", messages=[UserMessage(content=prompt)])
    as_part = ChatRequest(model="m", messages=[UserMessage(content=[TextPart(prompt)])])
    assert cache_key(scope, as_string) == cache_key(scope, as_part)
    if other != prompt:
        changed = ChatRequest(model="m", messages=[UserMessage(content=other)])
        assert cache_key(scope, changed) != cache_key(scope, as_string)


@FAST
@given(chat_requests(), text, text)
def test_cache_key_changes_with_messages_answer_parameters_and_scope(
    request: ChatRequest, extra: str, scope: str
) -> None:
    key = cache_key(scope, request)
    more = [*request.messages, UserMessage(content=extra)]
    assert cache_key(scope, msgspec.structs.replace(request, messages=more)) != key
    assert cache_key(scope, msgspec.structs.replace(request, seed=7)) != key
    tokens = (request.max_tokens or 0) + 1
    assert cache_key(scope, msgspec.structs.replace(request, max_tokens=tokens)) != key
    assert cache_key(scope + "x", request) != key
    assert cache_key(scope, request) == key  # deterministic
    assert encode(request)  # the request stays encodable (no hidden state in the key)


# ---------------------------------------------------------------- limit store


operations = st.lists(
    st.tuples(
        st.sampled_from(["admit", "settle", "wait"]),
        st.floats(0, 40, allow_nan=False),  # an amount, or seconds to wait
        st.integers(0, 30),  # which earlier reservation to settle
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(operations, st.floats(1, 100, allow_nan=False), st.floats(1, 30, allow_nan=False))
def test_window_never_admits_past_its_limit_and_expires_exactly(
    steps: list[tuple[str, float, int]], limit: float, window_s: float
) -> None:
    clock = ManualClock(1_000_000.0)
    store = MemoryLimitStore(clock)
    window = WindowLimit("rate:tokens", "tokens", window_s, limit)
    # The reference: every admitted reservation with its time and (settled) amount.
    log: dict[str, tuple[float, float]] = {}

    def in_window() -> float:
        return sum(a for at, a in log.values() if at > clock.time() - window_s)

    async def run() -> None:
        for at, (kind, value, which) in enumerate(steps):
            if kind == "wait":
                clock.advance(value)
            elif kind == "settle" and log:
                name = sorted(log)[which % len(log)]
                await store.settle("u", [window], name, {"tokens": value})
                if log[name][0] > clock.time() - window_s:  # a reservation gone stays gone
                    log[name] = (log[name][0], value)
            else:
                before = in_window()
                admission = await store.admit("u", [window], {"tokens": value}, f"r{at:03}")
                assert admission.admitted == (before + value <= limit + EPSILON)
                if admission.admitted:
                    log[f"r{at:03}"] = (clock.time(), value)
                    assert admission.states[0].used <= limit + EPSILON
                else:
                    assert admission.denied_by == "rate:tokens"
                    assert 0 <= admission.retry_after_s <= window_s + 1e-6
            (state,) = await store.read("u", [window])
            assert abs(state.used - in_window()) < 1e-6
        clock.advance(window_s + 1e-3)  # after a whole window, nothing is left
        (state,) = await store.read("u", [window])
        assert state.used == 0.0
        assert state.remaining == limit

    asyncio.run(run())
