"""`logprobs` / `top_logprobs` → `responseLogprobs` / `logprobs`; `logprobsResult` back."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from stellara.errors import InvalidRequestError
from stellara.providers.google.chat import (
    build_generate_body,
    parse_generate_response,
    to_completion,
)
from stellara.providers.google.stream import GeminiStreamParser
from stellara.schema.chat import request_decoder
from tests.specs.openai_schema import validate

RESULT = {
    "topCandidates": [
        {
            "candidates": [
                {"token": "Hé", "logProbability": -0.1, "tokenId": 7},
                {"token": "Hi", "logProbability": -2.5},
            ]
        },
        {"candidates": [{"token": "!", "logProbability": -0.01}]},
    ],
    "chosenCandidates": [
        {"token": "Hé", "logProbability": -0.1, "tokenId": 7},
        {"token": "!", "logProbability": -0.01},
    ],
    "logProbabilitySum": -0.11,
}
EXPECTED = {
    "content": [
        {
            "token": "Hé",
            "logprob": -0.1,
            "bytes": [72, 195, 169],
            "top_logprobs": [
                {"token": "Hé", "logprob": -0.1, "bytes": [72, 195, 169]},
                {"token": "Hi", "logprob": -2.5, "bytes": [72, 105]},
            ],
        },
        {
            "token": "!",
            "logprob": -0.01,
            "bytes": [33],
            "top_logprobs": [{"token": "!", "logprob": -0.01, "bytes": [33]}],
        },
    ],
    "refusal": None,
}


def generation_config(**fields: Any) -> Any:
    body = {"model": "alias", "messages": [{"role": "user", "content": "Hi"}], **fields}
    sent = json.loads(
        build_generate_body(request_decoder.decode(json.dumps(body)), "gemini-2.5-flash")
    )
    return sent.get("generationConfig")


def test_logprobs_request_maps_to_response_logprobs() -> None:
    assert generation_config(logprobs=True, top_logprobs=3) == {
        "responseLogprobs": True,
        "logprobs": 3,
    }
    assert generation_config(logprobs=True, top_logprobs=0) == {"responseLogprobs": True}
    assert generation_config(logprobs=False) is None


def test_top_logprobs_without_logprobs_is_refused() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        generation_config(top_logprobs=2)
    assert caught.value.param == "top_logprobs"


def test_logprobs_result_becomes_openai_choice_logprobs() -> None:
    answer = {
        "candidates": [
            {
                "content": {"role": "model", "parts": [{"text": "Hé!"}]},
                "finishReason": "STOP",
                "logprobsResult": RESULT,
                "avgLogprobs": -0.05,
            }
        ]
    }
    response = parse_generate_response(json.dumps(answer).encode(), "gem")
    completion = to_completion(
        response, provider="gem", completion_id="chatcmpl-1", created=1, model="m"
    )
    body = json.loads(msgspec.json.encode(completion))
    assert body["choices"][0]["logprobs"] == EXPECTED
    validate("CreateChatCompletionResponse", body)


def test_stream_event_logprobs_become_chunk_logprobs() -> None:
    parser = GeminiStreamParser("gem", fallback_id="chatcmpl-1", created=1, model="m")
    event = {
        "candidates": [
            {
                "content": {"role": "model", "parts": [{"text": "Hé!"}]},
                "finishReason": "STOP",
                "logprobsResult": RESULT,
            }
        ]
    }
    [chunk] = parser.feed(json.dumps(event).encode())
    body = json.loads(msgspec.json.encode(chunk))
    assert body["choices"][0]["logprobs"] == EXPECTED
    # The spec's chunk schema marks `refusal` `nullable: true`, an OpenAPI 3.0 keyword its 3.1
    # validator ignores; OpenAI itself streams null there, as the gateway does.
    body["choices"][0]["logprobs"]["refusal"] = []
    validate("CreateChatCompletionStreamResponse", body)
