"""Thought signatures ride in tool call ids to the client and come back to Gemini unchanged."""

from __future__ import annotations

import json
from typing import Any

import pytest

from stellara.providers.google.chat import (
    build_generate_body,
    parse_generate_response,
    to_completion,
)
from stellara.providers.google.signatures import SEPARATOR, signature_of, with_signature
from stellara.schema.chat import request_decoder

# Standard base64 with every character the id must not carry: `+`, `/` and padding.
SIGNATURE = "Cr8B+/Aa09z//+xA9w=="


@pytest.mark.parametrize("signature", [SIGNATURE, "AAAA", "AB+/", "ABC=", "A/=="])
def test_signature_survives_the_id_encoding(signature: str) -> None:
    call_id = with_signature("call_0a1b", signature)
    assert call_id.startswith("call_0a1b" + SEPARATOR)
    assert all(c.isalnum() or c in "_-" for c in call_id)
    assert signature_of(call_id) == signature


def test_call_without_signature_keeps_a_plain_id() -> None:
    assert with_signature("call_0a1b", None) == "call_0a1b"
    assert signature_of("call_0a1b") is None
    assert signature_of("toolu_01XyZ") is None


def test_signature_goes_from_gemini_answer_to_client_and_back() -> None:
    answer = {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [
                        {
                            "functionCall": {"name": "a", "args": {"x": 1}},
                            "thoughtSignature": SIGNATURE,
                        },
                        {"functionCall": {"name": "b", "args": {}}},
                    ],
                },
                "finishReason": "STOP",
            }
        ]
    }
    response = parse_generate_response(json.dumps(answer).encode(), "gem")
    message = (
        to_completion(response, provider="gem", completion_id="chatcmpl-1", created=1, model="m")
        .choices[0]
        .message
    )
    calls: list[dict[str, Any]] = [
        {
            "id": c.id,
            "type": "function",
            "function": {"name": c.function.name, "arguments": c.function.arguments},
        }
        for c in message.tool_calls or []
    ]
    assert SEPARATOR in calls[0]["id"]
    assert SEPARATOR not in calls[1]["id"]
    history = [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": None, "tool_calls": calls},
        {"role": "tool", "tool_call_id": calls[0]["id"], "content": "1"},
        {"role": "tool", "tool_call_id": calls[1]["id"], "content": "2"},
    ]
    request = request_decoder.decode(json.dumps({"model": "alias", "messages": history}))
    sent = json.loads(build_generate_body(request, "gemini-3-pro-preview"))
    assert sent["contents"][1] == {
        "role": "model",
        "parts": [
            {"functionCall": {"name": "a", "args": {"x": 1}}, "thoughtSignature": SIGNATURE},
            {"functionCall": {"name": "b", "args": {}}},
        ],
    }
    assert [p["functionResponse"]["name"] for p in sent["contents"][2]["parts"]] == ["a", "b"]
