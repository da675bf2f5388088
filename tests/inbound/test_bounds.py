"""Each bound on a request's shape: at the bound the request passes, one past it is a 400
naming the field, how many it holds and the bound."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from stellara.errors import InvalidRequestError
from stellara.inbound.bounds import (
    ERROR_CODE,
    MAX_CONTENT_PARTS,
    MAX_LOGIT_BIAS,
    MAX_MESSAGES,
    MAX_METADATA,
    MAX_MODALITIES,
    MAX_STOP_SEQUENCES,
    MAX_TOOLS,
    check_bounds,
)
from stellara.schema.chat import request_decoder
from stellara.schema.embeddings import embeddings_request_decoder
from stellara.wire import anthropic as wire

USER = {"role": "user", "content": "hi"}
TEXT = {"type": "text", "text": "x"}
TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
CALL = {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
ANTHROPIC_TOOL = {"name": "f", "input_schema": {"type": "object"}}
RESULT_WITH = {"type": "tool_result", "tool_use_id": "t", "content": [TEXT]}


def openai(**fields: Any) -> Any:
    return request_decoder.decode(msgspec.json.encode({"model": "m", "messages": [USER], **fields}))


def anthropic(**fields: Any) -> Any:
    body = {"model": "m", "max_tokens": 8, "messages": [USER], **fields}
    return wire.request_decoder.decode(msgspec.json.encode(body))


def parts(count: int) -> list[dict[str, Any]]:
    return [{"role": "user", "content": [TEXT] * count}]


# (what, param, build a request holding n of it, the bound)
Case = tuple[str, str, Callable[[int], Any], int]
CASES: list[Case] = [
    ("openai messages", "messages", lambda n: openai(messages=[USER] * n), MAX_MESSAGES),
    ("openai parts", "messages", lambda n: openai(messages=parts(n)), MAX_CONTENT_PARTS),
    (
        "openai parts and tool calls",
        "messages",
        lambda n: openai(
            messages=[*parts(n - 1), {"role": "assistant", "tool_calls": [CALL]}], tools=[TOOL]
        ),
        MAX_CONTENT_PARTS,
    ),
    ("openai tools", "tools", lambda n: openai(tools=[TOOL] * n), MAX_TOOLS),
    ("openai stop", "stop", lambda n: openai(stop=["."] * n), MAX_STOP_SEQUENCES),
    (
        "openai logit_bias",
        "logit_bias",
        lambda n: openai(logit_bias={str(i): 1 for i in range(n)}),
        MAX_LOGIT_BIAS,
    ),
    (
        "openai metadata",
        "metadata",
        lambda n: openai(metadata={str(i): "v" for i in range(n)}),
        MAX_METADATA,
    ),
    ("openai modalities", "modalities", lambda n: openai(modalities=["text"] * n), MAX_MODALITIES),
    ("anthropic messages", "messages", lambda n: anthropic(messages=[USER] * n), MAX_MESSAGES),
    ("anthropic blocks", "messages", lambda n: anthropic(messages=parts(n)), MAX_CONTENT_PARTS),
    (
        "anthropic system blocks",
        "messages",
        lambda n: anthropic(system=[TEXT] * (n - 1), messages=parts(1)),
        MAX_CONTENT_PARTS,
    ),
    (
        "anthropic blocks in tool results",
        "messages",
        lambda n: anthropic(
            messages=[{"role": "user", "content": [RESULT_WITH] * (n // 2) + [TEXT] * (n % 2)}]
        ),
        MAX_CONTENT_PARTS,
    ),
    ("anthropic tools", "tools", lambda n: anthropic(tools=[ANTHROPIC_TOOL] * n), MAX_TOOLS),
    (
        "anthropic stop_sequences",
        "stop_sequences",
        lambda n: anthropic(stop_sequences=["."] * n),
        MAX_STOP_SEQUENCES,
    ),
]


@pytest.mark.parametrize(("what", "param", "build", "bound"), CASES, ids=[c[0] for c in CASES])
def test_bound_admits_its_limit_and_refuses_one_more(
    what: str, param: str, build: Callable[[int], Any], bound: int
) -> None:
    check_bounds(build(bound))
    with pytest.raises(InvalidRequestError) as refused:
        check_bounds(build(bound + 1))
    error = refused.value
    assert error.status_code == 400
    assert error.param == param
    assert error.code == ERROR_CODE
    assert f"{bound + 1} " in error.message
    assert f"at most {bound} " in error.message


def test_embeddings_are_bounded_by_their_schema() -> None:
    check_bounds(embeddings_request_decoder.decode(b'{"model": "m", "input": "hi"}'))
    too_many = msgspec.json.encode({"model": "m", "input": ["x"] * 2049})
    with pytest.raises(msgspec.ValidationError, match="length <= 2048"):
        embeddings_request_decoder.decode(too_many)
