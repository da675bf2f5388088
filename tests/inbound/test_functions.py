"""The deprecated `functions` form translated to tools and back, without sockets."""

from __future__ import annotations

import msgspec
import pytest

from stellara.inbound.functions import (
    to_function_call_chunk,
    to_function_call_completion,
    to_tools_request,
    uses_functions,
)
from stellara.schema.chat import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatRequest,
    request_decoder,
)


def _request(**fields: object) -> ChatRequest:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields}
    return request_decoder.decode(msgspec.json.encode(body))


F = {"name": "f", "parameters": {"type": "object"}}


@pytest.mark.parametrize(
    ("asked", "choice"),
    [
        ("none", "none"),
        ("auto", "auto"),
        ({"name": "f"}, {"type": "function", "function": {"name": "f"}}),
    ],
)
def test_functions_function_call_becomes_tool_choice(asked: object, choice: object) -> None:
    request = _request(functions=[F], function_call=asked)
    assert uses_functions(request)
    tools = to_tools_request(request)
    assert not uses_functions(tools)
    sent = msgspec.to_builtins(tools)
    assert sent["tools"] == [{"type": "function", "function": F}]
    assert sent["tool_choice"] == choice


def test_functions_plain_request_is_not_legacy() -> None:
    assert not uses_functions(_request(tools=[{"type": "function", "function": F}]))


def _call(index: int, name: str) -> dict[str, object]:
    return {"id": f"c{index}", "type": "function", "function": {"name": name, "arguments": "{}"}}


def test_functions_answer_keeps_a_second_call_in_tool_calls() -> None:
    completion = msgspec.convert(
        {
            "id": "x",
            "object": "chat.completion",
            "created": 0,
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "tool_calls",
                    "message": {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [_call(0, "f"), _call(1, "g")],
                    },
                }
            ],
        },
        ChatCompletion,
    )
    [choice] = to_function_call_completion(completion).choices
    assert choice.finish_reason == "function_call"
    assert choice.message.function_call is not None
    assert choice.message.function_call.name == "f"
    assert [c.function.name for c in choice.message.tool_calls or ()] == ["g"]


def test_functions_chunk_maps_index_zero_only() -> None:
    chunk = msgspec.convert(
        {
            "id": "x",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": "c0",
                                "type": "function",
                                "function": {"name": "f", "arguments": ""},
                            },
                            {"index": 1, "function": {"arguments": "{}"}},
                        ]
                    },
                }
            ],
        },
        ChatCompletionChunk,
    )
    [choice] = to_function_call_chunk(chunk).choices
    assert choice.delta.function_call is not None
    assert choice.delta.function_call.name == "f"
    assert [c.index for c in choice.delta.tool_calls or ()] == [1]
