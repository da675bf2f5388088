"""The orchestration API's prompt body: which bodies are prompt bodies, what each option
becomes in the canonical request, and the 400s that name what cannot be taken."""

from __future__ import annotations

import msgspec
import pytest

from stellara import _json
from stellara.errors import InvalidRequestError
from stellara.inbound.orchestration import (
    OPTION_NAMES,
    PARAM_NAMES,
    decode_prompt_request,
    is_prompt_body,
    to_chat_request,
)
from stellara.schema.chat import ChatRequest, SystemMessage, UserMessage

BASE = {"prompt": "Name a river.", "userId": "alice", "model": "chat"}


def translate(**fields: object) -> ChatRequest:
    return to_chat_request(decode_prompt_request(_json.dumps({**BASE, **fields})))


def test_every_option_becomes_its_canonical_parameter() -> None:
    options = {
        "temperature": 0.5,
        "maxTokens": 40,
        "topP": 0.8,
        "stop": ["\n"],
        "presencePenalty": 0.1,
        "frequencyPenalty": -0.2,
        "seed": 11,
        "stream": True,
        "systemPrompt": "Be brief.",
    }
    assert set(options) == set(OPTION_NAMES)
    chat = translate(options=options)
    assert chat == ChatRequest(
        model="chat",
        messages=[SystemMessage(content="Be brief."), UserMessage(content="Name a river.")],
        stream=True,
        temperature=0.5,
        top_p=0.8,
        stop=["\n"],
        max_tokens=40,
        presence_penalty=0.1,
        frequency_penalty=-0.2,
        seed=11,
    )
    assert chat.is_streaming
    named = {name.removeprefix("options.") for name in PARAM_NAMES.values()}
    assert named == set(options) - {"systemPrompt"}


def test_prompt_alone_is_one_user_message_and_no_parameter() -> None:
    assert translate() == ChatRequest(model="chat", messages=[UserMessage(content="Name a river.")])


@pytest.mark.parametrize(
    ("body", "is_prompt"),
    [
        (b'{"prompt": "x", "userId": "u", "model": "m"}', True),
        (b'{"userId": "u"}', True),
        (b'{"model": "m", "messages": []}', False),
        (b"{}", False),
    ],
)
def test_prompt_body_is_told_by_its_fields(body: bytes, is_prompt: bool) -> None:
    assert is_prompt_body(body) is is_prompt


@pytest.mark.parametrize("field", ["prompt", "userId"])
def test_messages_beside_a_prompt_field_is_refused(field: str) -> None:
    body = _json.dumps({"messages": [], field: "x"})
    with pytest.raises(InvalidRequestError) as refused:
        is_prompt_body(body)
    assert refused.value.param == field


def test_body_that_is_not_an_object_is_a_decode_error() -> None:
    with pytest.raises(msgspec.DecodeError):
        is_prompt_body(b"[1]")


def test_snake_case_option_is_pointed_to_its_camel_case_name() -> None:
    with pytest.raises(InvalidRequestError) as refused:
        translate(options={"max_tokens": 5})
    assert refused.value.param == "options.max_tokens"
    assert "'maxTokens'" in refused.value.message


def test_unknown_option_is_named_with_the_options_taken() -> None:
    with pytest.raises(InvalidRequestError) as refused:
        translate(options={"topK": 5})
    assert refused.value.param == "options.topK"
    assert "did you mean" not in refused.value.message
    assert all(name in refused.value.message for name in OPTION_NAMES)


def test_missing_model_is_named() -> None:
    body = _json.dumps({"prompt": "x", "userId": "u"})
    with pytest.raises(InvalidRequestError) as refused:
        decode_prompt_request(body)
    assert refused.value.param == "model"


def test_other_faults_are_left_to_the_route() -> None:
    body = _json.dumps({**BASE, "options": {"temperature": 5}})
    with pytest.raises(msgspec.ValidationError, match=r"\$\.options\.temperature"):
        decode_prompt_request(body)
