"""Stored answers replayed as streams, and streams assembled back into stored answers."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from stellara.cache.assemble import StreamAssembler
from stellara.cache.replay import MAX_PIECE_CHARS, replay_chunks, replay_stream, split_text
from stellara.schema.chat import (
    ChatCompletion,
    ChatCompletionChunk,
    Choice,
    FunctionCall,
    ResponseMessage,
    ToolCall,
    Usage,
    chunk_decoder,
    completion_decoder,
)

PROSE = (
    "The quick brown fox jumps over the lazy dog. Sphinx of black quartz, judge my vow!\n\n"
    "  Indented line with   several spaces, a URL https://example.com/" + "a" * 70 + " and "
    "unicode: naïve café, 日本語のテキストは空白なしで続きます。終わり。 🎉 done.\n"
)
USAGE = Usage(prompt_tokens=12, completion_tokens=34, total_tokens=46)


def _completion(*choices: Choice, usage: Usage | None = USAGE) -> ChatCompletion:
    return ChatCompletion(
        id="chatcmpl-123",
        object="chat.completion",
        created=1_727_000_000,
        model="gpt-4o-2024-08-06",
        choices=list(choices),
        usage=usage,
        system_fingerprint="fp_abc",
        service_tier="default",
    )


def _choice(message: ResponseMessage, index: int = 0, finish: str = "stop") -> Choice:
    return Choice(index=index, message=message, finish_reason=finish)


def _text(content: str | None) -> ResponseMessage:
    return ResponseMessage(role="assistant", content=content)


TOOLS = ResponseMessage(
    role="assistant",
    content=None,
    tool_calls=[
        ToolCall(
            id="call_a",
            type="function",
            function=FunctionCall(name="get_weather", arguments='{"location": "Paris"}'),
        ),
        ToolCall(id="call_b", type="function", function=FunctionCall(name="now", arguments="{}")),
    ],
)
REFUSAL = ResponseMessage(
    role="assistant", content=None, refusal="I'm sorry, but I can't help with that request."
)


def _wire(value: msgspec.Struct) -> Any:
    return json.loads(msgspec.json.encode(value))


def _deltas(chunks: list[ChatCompletionChunk]) -> list[dict[str, Any]]:
    return [_wire(chunk.choices[0].delta) for chunk in chunks if chunk.choices]


def _assemble(chunks: list[ChatCompletionChunk], **kwargs: int) -> ChatCompletion | None:
    assembler = StreamAssembler(**kwargs)
    for chunk in chunks:
        assembler.feed(chunk)
    return assembler.result()


# ---------------------------------------------------------------- split_text


@pytest.mark.parametrize(
    "text", [PROSE, "", " ", "word", "x" * 100, "  leading", "a b c d e f g h i j k l m n o p q"]
)
def test_split_text_pieces_concatenate_to_the_text(text: str) -> None:
    pieces = split_text(text)

    assert "".join(pieces) == text
    assert all(0 < len(piece) <= MAX_PIECE_CHARS for piece in pieces)


def test_split_text_cuts_prose_after_whitespace() -> None:
    text = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor. " * 4

    pieces = split_text(text)

    assert len(pieces) > 5
    assert all(piece[-1] == " " for piece in pieces)
    assert all(16 <= len(piece) <= 32 for piece in pieces[:-1])


# ---------------------------------------------------------------- replay


def test_replay_text_streams_role_then_pieces_then_finish() -> None:
    completion = _completion(_choice(_text(PROSE)))

    chunks = replay_chunks(completion, include_usage=False)

    deltas = _deltas(chunks)
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert len(deltas) > 5
    assert "".join(d["content"] for d in deltas[1:-1]) == PROSE
    assert deltas[-1] == {}
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(chunk.choices[0].finish_reason is None for chunk in chunks[:-1])
    for chunk in chunks:
        wire = _wire(chunk)
        assert isinstance(wire, dict)
        assert wire["object"] == "chat.completion.chunk"
        assert (wire["id"], wire["created"], wire["model"]) == (
            "chatcmpl-123",
            1_727_000_000,
            "gpt-4o-2024-08-06",
        )
        assert wire["system_fingerprint"] == "fp_abc"
        assert "usage" not in wire


def test_replay_with_usage_ends_with_a_choiceless_usage_chunk() -> None:
    completion = _completion(_choice(_text("Hello!")))

    chunks = replay_chunks(completion, include_usage=True)

    assert _wire(chunks[-1]) == {
        "id": "chatcmpl-123",
        "object": "chat.completion.chunk",
        "created": 1_727_000_000,
        "model": "gpt-4o-2024-08-06",
        "choices": [],
        "usage": {"prompt_tokens": 12, "completion_tokens": 34, "total_tokens": 46},
        "system_fingerprint": "fp_abc",
        "service_tier": "default",
    }
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert all(chunk.usage is None for chunk in chunks[:-1])


def test_replay_tool_calls_sends_each_call_whole() -> None:
    completion = _completion(_choice(TOOLS, finish="tool_calls"))

    deltas = _deltas(replay_chunks(completion, include_usage=False))

    assert deltas == [
        {"role": "assistant"},
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"location": "Paris"}'},
                }
            ]
        },
        {
            "tool_calls": [
                {
                    "index": 1,
                    "id": "call_b",
                    "type": "function",
                    "function": {"name": "now", "arguments": "{}"},
                }
            ]
        },
        {},
    ]


def test_replay_refusal_streams_the_refusal_text() -> None:
    completion = _completion(_choice(REFUSAL))

    deltas = _deltas(replay_chunks(completion, include_usage=False))

    assert deltas[0] == {"role": "assistant"}
    assert all(set(d) == {"refusal"} for d in deltas[1:-1])
    assert "".join(d["refusal"] for d in deltas[1:-1]) == REFUSAL.refusal
    assert deltas[-1] == {}


def test_replay_two_choices_interleaves_them_round_robin() -> None:
    completion = _completion(
        _choice(_text("Short."), index=0),
        _choice(_text(PROSE), index=1, finish="length"),
    )

    chunks = replay_chunks(completion, include_usage=True)

    indices = [chunk.choices[0].index for chunk in chunks[:-1]]
    assert all(len(chunk.choices) == 1 for chunk in chunks[:-1])
    assert indices[:6] == [0, 1, 0, 1, 0, 1]
    assert set(indices[6:]) == {1}
    finishes = {c.choices[0].index: c.choices[0].finish_reason for c in chunks[:-1]}
    assert finishes == {0: "stop", 1: "length"}
    assert chunks[-1].choices == []


async def test_replay_stream_yields_the_replay_chunks() -> None:
    completion = _completion(_choice(_text(PROSE)), _choice(TOOLS, index=1))

    streamed = [chunk async for chunk in replay_stream(completion, include_usage=True)]

    assert streamed == replay_chunks(completion, include_usage=True)


# ---------------------------------------------------------------- round trip

# What a stream cannot carry: the choice's logprobs and the message's annotations and audio.
LOSSY = msgspec.Raw(b'{"content":[]}')


@pytest.mark.parametrize(
    "choices",
    [
        pytest.param([_choice(_text(PROSE))], id="text"),
        pytest.param([_choice(_text(""))], id="empty-content"),
        pytest.param([_choice(TOOLS, finish="tool_calls")], id="tool-calls"),
        pytest.param(
            [_choice(msgspec.structs.replace(TOOLS, content="Let me check."), finish="tool_calls")],
            id="text-and-tool-calls",
        ),
        pytest.param([_choice(REFUSAL)], id="refusal"),
        pytest.param(
            [_choice(_text(None), finish="content_filter")], id="no-content-content-filter"
        ),
        pytest.param(
            [
                _choice(
                    ResponseMessage(
                        role="assistant",
                        content=None,
                        function_call=FunctionCall(name="f", arguments='{"x": 1}'),
                    ),
                    finish="function_call",
                )
            ],
            id="legacy-function-call",
        ),
        pytest.param(
            [_choice(_text(PROSE)), _choice(TOOLS, index=1, finish="tool_calls")], id="n=2"
        ),
        pytest.param(
            [Choice(0, _text("Hello there "), "stop", stop_reason="Claude")],
            id="stop-sequence",
        ),
    ],
)
@pytest.mark.parametrize("include_usage", [True, False])
def test_assembler_over_replay_gives_back_the_completion(
    choices: list[Choice], include_usage: bool
) -> None:
    original = _completion(*choices)
    with_lossy = msgspec.structs.replace(
        original,
        choices=[
            msgspec.structs.replace(
                c, logprobs=LOSSY, message=msgspec.structs.replace(c.message, annotations=LOSSY)
            )
            for c in original.choices
        ],
    )

    rebuilt = _assemble(replay_chunks(with_lossy, include_usage=include_usage))

    expected = original if include_usage else msgspec.structs.replace(original, usage=None)
    assert rebuilt is not None
    assert msgspec.json.encode(rebuilt) == msgspec.json.encode(expected)


# ---------------------------------------------------------------- assembler on upstream streams

_HEAD = (
    '"id":"chatcmpl-9x","object":"chat.completion.chunk","created":1727000001,'
    '"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_f3"'
)


def _openai_chunk(choices: str, usage: str = "null") -> ChatCompletionChunk:
    return chunk_decoder.decode(f'{{{_HEAD},"choices":[{choices}],"usage":{usage}}}')


def _tool_delta(tool_call: str) -> str:
    return (
        f'{{"index":0,"delta":{{"tool_calls":[{tool_call}]}},"logprobs":null,"finish_reason":null}}'
    )


# As OpenAI streams two parallel tool calls with stream_options.include_usage.
PARALLEL_TOOLS_STREAM = [
    _openai_chunk(
        '{"index":0,"delta":{"role":"assistant","content":null,"refusal":null},'
        '"logprobs":null,"finish_reason":null}'
    ),
    _openai_chunk(
        _tool_delta(
            '{"index":0,"id":"call_W1","type":"function",'
            '"function":{"name":"get_weather","arguments":""}}'
        )
    ),
    _openai_chunk(_tool_delta('{"index":0,"function":{"arguments":"{\\"lo"}}')),
    _openai_chunk(_tool_delta('{"index":0,"function":{"arguments":"cation\\": \\"Pa"}}')),
    _openai_chunk(_tool_delta('{"index":0,"function":{"arguments":"ris, FR\\"}"}}')),
    _openai_chunk(
        _tool_delta(
            '{"index":1,"id":"call_T2","type":"function",'
            '"function":{"name":"get_time","arguments":""}}'
        )
    ),
    _openai_chunk(_tool_delta('{"index":1,"function":{"arguments":"{\\"tz\\""}}')),
    _openai_chunk(_tool_delta('{"index":1,"function":{"arguments":": \\"Europe/"}}')),
    _openai_chunk(_tool_delta('{"index":1,"function":{"arguments":"Paris\\"}"}}')),
    _openai_chunk('{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}'),
    chunk_decoder.decode(
        f'{{{_HEAD},"choices":[],"usage":{{"prompt_tokens":80,"completion_tokens":52,'
        '"total_tokens":132,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},'
        '"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,'
        '"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}'
    ),
]

PARALLEL_TOOLS_COMPLETION = completion_decoder.decode(
    b"""{
  "id": "chatcmpl-9x", "object": "chat.completion", "created": 1727000001,
  "model": "gpt-4o-2024-08-06",
  "choices": [{
    "index": 0,
    "message": {
      "role": "assistant", "content": null,
      "tool_calls": [
        {"id": "call_W1", "type": "function",
         "function": {"name": "get_weather", "arguments": "{\\"location\\": \\"Paris, FR\\"}"}},
        {"id": "call_T2", "type": "function",
         "function": {"name": "get_time", "arguments": "{\\"tz\\": \\"Europe/Paris\\"}"}}
      ]
    },
    "finish_reason": "tool_calls"
  }],
  "usage": {
    "prompt_tokens": 80, "completion_tokens": 52, "total_tokens": 132,
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
      "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}
  },
  "system_fingerprint": "fp_f3", "service_tier": "default"
}"""
)


def test_assembler_merges_parallel_tool_call_fragments() -> None:
    rebuilt = _assemble(PARALLEL_TOOLS_STREAM)

    assert rebuilt is not None
    assert msgspec.json.encode(rebuilt) == msgspec.json.encode(PARALLEL_TOOLS_COMPLETION)


def test_assembler_keeps_the_first_id_and_name_when_a_server_repeats_them() -> None:
    stream = [
        _openai_chunk(_tool_delta('{"index":0,"id":"call_1","function":{"name":"f"}}')),
        _openai_chunk(
            _tool_delta('{"index":0,"id":"call_1","function":{"name":"f","arguments":"{}"}}')
        ),
        _openai_chunk('{"index":0,"delta":{},"finish_reason":"tool_calls"}'),
    ]

    rebuilt = _assemble(stream)

    assert rebuilt is not None
    assert rebuilt.choices[0].message.tool_calls == [
        ToolCall(id="call_1", type="function", function=FunctionCall(name="f", arguments="{}"))
    ]


def test_assembler_takes_the_header_from_the_first_chunk_that_has_it() -> None:
    azure_filter_results = ChatCompletionChunk(
        id="", object="chat.completion.chunk", created=0, model="", choices=[]
    )

    rebuilt = _assemble([azure_filter_results, *PARALLEL_TOOLS_STREAM])

    assert rebuilt is not None
    assert (rebuilt.id, rebuilt.created, rebuilt.model) == (
        "chatcmpl-9x",
        1727000001,
        "gpt-4o-2024-08-06",
    )


@pytest.mark.parametrize(
    "stream",
    [
        pytest.param([], id="no-chunks"),
        pytest.param(PARALLEL_TOOLS_STREAM[:-2], id="cut-before-finish"),
        pytest.param(PARALLEL_TOOLS_STREAM[-1:], id="usage-only"),
        pytest.param(
            replay_chunks(
                _completion(_choice(_text("a")), _choice(_text("b"), index=1)),
                include_usage=False,
            )[:-1],
            id="second-choice-unfinished",
        ),
        pytest.param(
            [
                _openai_chunk(_tool_delta('{"index":0,"function":{"name":"f","arguments":"{}"}}')),
                _openai_chunk('{"index":0,"delta":{},"finish_reason":"tool_calls"}'),
            ],
            id="tool-call-without-id",
        ),
    ],
)
def test_assembler_returns_none_for_an_incomplete_stream(
    stream: list[ChatCompletionChunk],
) -> None:
    assert _assemble(stream) is None


def test_assembler_gives_up_past_the_size_bound() -> None:
    chunks = replay_chunks(_completion(_choice(_text("x" * 1000))), include_usage=True)
    assembler = StreamAssembler(max_chars=500)

    for chunk in chunks:
        assembler.feed(chunk)

    assert assembler.is_over_limit
    assert assembler.result() is None


def test_assembler_size_bound_counts_new_tool_call_entries() -> None:
    empty_calls = [
        _openai_chunk(_tool_delta(f'{{"index":{i},"id":"c","function":{{"name":"f"}}}}'))
        for i in range(100)
    ]

    assembler = StreamAssembler(max_chars=1000)
    for chunk in empty_calls:
        assembler.feed(chunk)

    assert assembler.is_over_limit


def test_assembler_under_the_size_bound_still_assembles() -> None:
    completion = _completion(_choice(_text("x" * 1000)))

    rebuilt = _assemble(replay_chunks(completion, include_usage=True), max_chars=2000)

    assert rebuilt == completion
