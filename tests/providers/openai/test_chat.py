import json
from typing import Any

import pytest

from stellara.errors import UpstreamProtocolError
from stellara.providers.openai.chat import build_chat_body, parse_chat_response
from stellara.schema.chat import ChatCompletion, request_decoder

USER_ONLY: list[dict[str, Any]] = [{"role": "user", "content": "Hi"}]


def body_for(request: dict[str, Any], model: str = "gpt-4o-mini") -> dict[str, Any]:
    decoded = request_decoder.decode(json.dumps(request))
    result: dict[str, Any] = json.loads(build_chat_body(decoded, model))
    return result


def test_build_chat_body_replaces_model():
    body = body_for({"model": "smart", "messages": USER_ONLY}, "gpt-4o-2024-08-06")
    assert body == {"model": "gpt-4o-2024-08-06", "messages": USER_ONLY}


def test_build_chat_body_keeps_client_parameters():
    request = {
        "model": "smart",
        "messages": USER_ONLY,
        "temperature": 0.3,
        "max_tokens": 50,
        "stop": ["END"],
        "tools": [
            {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
        ],
        "tool_choice": "required",
        "response_format": {"type": "json_object"},
        "seed": 7,
    }
    assert body_for(request, "up") == {**request, "model": "up"}


def test_build_chat_body_stream_forces_include_usage():
    body = body_for({"model": "smart", "messages": USER_ONLY, "stream": True})
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


def test_build_chat_body_stream_overrides_include_usage_false():
    body = body_for(
        {
            "model": "smart",
            "messages": USER_ONLY,
            "stream": True,
            "stream_options": {"include_usage": False},
        }
    )
    assert body["stream_options"] == {"include_usage": True}


def test_build_chat_body_non_stream_sends_no_stream_options():
    body = body_for({"model": "smart", "messages": USER_ONLY})
    assert "stream_options" not in body
    assert "stream" not in body


def test_build_chat_body_stream_false_keeps_client_stream_options_untouched():
    body = body_for({"model": "smart", "messages": USER_ONLY, "stream": False})
    assert body["stream"] is False
    assert "stream_options" not in body


def test_build_chat_body_drops_null_fields():
    body = body_for(
        {
            "model": "smart",
            "messages": [{"role": "user", "content": "Hi", "name": None}],
            "temperature": None,
            "tools": None,
            "user": None,
        }
    )
    assert body == {"model": "gpt-4o-mini", "messages": USER_ONLY}
    raw = json.dumps(body)
    assert "null" not in raw


def test_build_chat_body_relays_undeclared_fields_at_the_top_level():
    extra = {"min_p": 0.1, "guided_json": {"type": "object"}, "moderation": None}
    body = body_for({"model": "smart", "messages": USER_ONLY, **extra})
    assert body == {"model": "gpt-4o-mini", "messages": USER_ONLY, **extra}


def test_build_chat_body_does_not_mutate_request():
    request = request_decoder.decode(
        json.dumps({"model": "smart", "messages": USER_ONLY, "stream": True})
    )
    build_chat_body(request, "gpt-4o")
    assert request.model == "smart"
    assert request.stream_options is None


COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1700000000,
    "model": "gpt-4o-mini",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello!"},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
}


def test_parse_chat_response_decodes_completion():
    completion = parse_chat_response(json.dumps(COMPLETION).encode(), "p1")
    assert isinstance(completion, ChatCompletion)
    assert completion.choices[0].message.content == "Hello!"
    assert completion.usage is not None
    assert completion.usage.total_tokens == 5


def test_parse_chat_response_ignores_unknown_fields():
    body = {**COMPLETION, "brand_new": {"x": 1}}
    assert parse_chat_response(json.dumps(body).encode(), "p1").id == "chatcmpl-1"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"<html>Bad gateway</html>",
        b'{"id": "chatcmpl-1", ',
        b"[]",
        b'{"error": {"message": "boom"}}',
        json.dumps({**COMPLETION, "object": "chat.completion.chunk"}).encode(),
        json.dumps({**COMPLETION, "choices": "none"}).encode(),
        json.dumps({**COMPLETION, "created": "yesterday"}).encode(),
        json.dumps(
            {**COMPLETION, "choices": [{"index": 0, "message": {"role": "user", "content": "x"}}]}
        ).encode(),
    ],
)
def test_parse_chat_response_bad_body_raises_protocol_error(body):
    with pytest.raises(UpstreamProtocolError) as info:
        parse_chat_response(body, "p1")
    assert info.value.provider == "p1"
    assert "'p1'" in info.value.message
    assert info.value.status_code == 502
