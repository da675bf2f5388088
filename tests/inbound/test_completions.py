"""The legacy Completions translator: what a chat answer's logprobs, refusals and finish
reasons become in a `text_completion`, whole and streamed (offsets across events included)."""

from __future__ import annotations

import msgspec

from stellara import _json
from stellara.inbound.completions import (
    TextCompletionStreamWriter,
    to_chat_request,
    to_text_completion,
)
from stellara.schema.chat import (
    ChatCompletion,
    ChatCompletionChunk,
    Choice,
    ChunkChoice,
    Delta,
    ResponseMessage,
)
from stellara.schema.completions import CompletionRequest, request_decoder
from tests.specs.openai_schema import validate

# A chat choice's logprobs as OpenAI documents them (top_logprobs: 2).
LOGPROBS = (
    b'{"content":['
    b'{"token":"Hello","logprob":-0.31,"bytes":[72,101,108,108,111],"top_logprobs":['
    b'{"token":"Hello","logprob":-0.31,"bytes":null},{"token":"Hi","logprob":-1.4,"bytes":null}]},'
    b'{"token":" world","logprob":-0.02,"bytes":null,"top_logprobs":['
    b'{"token":" world","logprob":-0.02,"bytes":null},'
    b'{"token":" there","logprob":-4.1,"bytes":null}]}'
    b'],"refusal":null}'
)


def request(**fields: object) -> CompletionRequest:
    return request_decoder.decode(_json.dumps({"model": "m", "prompt": "Greet", **fields}))


def completion(message: ResponseMessage, reason: str, logprobs: bytes = b"null") -> ChatCompletion:
    choice = Choice(0, message, reason, msgspec.Raw(logprobs))
    return ChatCompletion("chatcmpl-abc", "chat.completion", 1, "gpt-x", [choice])


def test_logprobs_become_the_legacy_arrays() -> None:
    legacy = to_text_completion(
        completion(ResponseMessage("assistant", "Hello world"), "stop", LOGPROBS),
        request(logprobs=2),
    )
    body = msgspec.json.decode(_json.encode(legacy))
    validate("CreateCompletionResponse", body)
    assert body["id"] == "cmpl-abc"
    assert body["choices"][0]["logprobs"] == {
        "tokens": ["Hello", " world"],
        "token_logprobs": [-0.31, -0.02],
        "top_logprobs": [{"Hello": -0.31, "Hi": -1.4}, {" world": -0.02, " there": -4.1}],
        "text_offset": [0, 5],
    }
    asked = to_chat_request(request(logprobs=2))
    assert (asked.logprobs, asked.top_logprobs) == (True, 2)


def test_logprobs_not_asked_for_stay_null() -> None:
    legacy = to_text_completion(
        completion(ResponseMessage("assistant", "Hello world"), "stop", LOGPROBS), request()
    )
    assert legacy.choices[0].logprobs is None


def test_a_refusal_is_text_filtered_by_content() -> None:
    refused = ResponseMessage("assistant", None, refusal="I can't help with that.")
    legacy = to_text_completion(completion(refused, "stop"), request())
    [choice] = legacy.choices
    assert (choice.text, choice.finish_reason) == ("I can't help with that.", "content_filter")


def test_chat_only_finish_reasons_become_stop() -> None:
    legacy = to_text_completion(
        completion(ResponseMessage("assistant", "x"), "tool_calls"), request()
    )
    assert legacy.choices[0].finish_reason == "stop"


def chunk(*choices: ChunkChoice) -> ChatCompletionChunk:
    return ChatCompletionChunk("chatcmpl-abc", "chat.completion.chunk", 1, "gpt-x", list(choices))


def piece_logprobs(token: str, logprob: float) -> msgspec.Raw:
    item = {"token": token, "logprob": logprob, "bytes": None, "top_logprobs": []}
    return msgspec.Raw(_json.dumps({"content": [item], "refusal": None}))


def test_stream_offsets_run_on_across_events() -> None:
    writer = TextCompletionStreamWriter(request(logprobs=0))
    assert writer.feed(chunk(ChunkChoice(0, Delta(role="assistant", content="")))) is None
    first = writer.feed(
        chunk(ChunkChoice(0, Delta(content="Hello"), None, piece_logprobs("Hello", -0.3)))
    )
    second = writer.feed(
        chunk(ChunkChoice(0, Delta(content=" world"), None, piece_logprobs(" world", -0.1)))
    )
    last = writer.feed(chunk(ChunkChoice(0, Delta(), "stop")))
    assert first is not None
    assert second is not None
    assert last is not None
    assert first.choices[0].logprobs is not None
    assert second.choices[0].logprobs is not None
    assert first.choices[0].logprobs.text_offset == [0]
    assert second.choices[0].logprobs.text_offset == [5]
    assert (last.choices[0].text, last.choices[0].finish_reason) == ("", "stop")


def test_stream_echo_and_refusal() -> None:
    writer = TextCompletionStreamWriter(request(echo=True))
    first = writer.feed(chunk(ChunkChoice(0, Delta(refusal="No."))))
    last = writer.feed(chunk(ChunkChoice(0, Delta(), "stop")))
    assert first is not None
    assert last is not None
    assert first.choices[0].text == "GreetNo."
    assert last.choices[0].finish_reason == "content_filter"
