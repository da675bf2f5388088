"""Token counts with the shipped BPE files: known values, chat accounting, never the network."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path
from typing import Any

import msgspec
import pytest
import requests
import tiktoken.load
import tiktoken_ext.openai_public  # type: ignore[import-untyped]  # tiktoken ships no stubs for it

from stellara.schema.chat import ChatRequest, request_decoder
from stellara.tokens import EncodingDataError, TokenCounter, encoding_name_for, load_encoding
from stellara.tokens.counter import (
    CL100K_BASE,
    IMAGE_TOKENS_DEFAULT,
    IMAGE_TOKENS_LOW,
    O200K_BASE,
    EncodingSpec,
)

DATA_DIR = Path(__file__).resolve().parents[2] / "src" / "stellara" / "tokens" / "data"


@pytest.fixture(scope="module")
def counter() -> TokenCounter:
    return TokenCounter()


def _request(messages: list[dict[str, Any]], **extra: Any) -> ChatRequest:
    return request_decoder.decode(
        msgspec.json.encode({"model": "m", "messages": messages, **extra})
    )


@pytest.mark.parametrize(
    ("text", "cl100k", "o200k"),
    [
        ("hello world", 2, 2),
        ("tiktoken is great!", 6, 6),
        ("antidisestablishmentarianism", 6, 6),
        ("你好\uff0c世界", 6, 3),  # fullwidth comma
        ("", 0, 0),
    ],
)
def test_count_text_known_counts(counter: TokenCounter, text: str, cl100k: int, o200k: int) -> None:
    assert counter.count_text(text, "gpt-4") == cl100k
    assert counter.count_text(text, "gpt-4o") == o200k


def test_count_text_known_token_ids(counter: TokenCounter) -> None:
    assert counter.encoding("gpt-3.5-turbo").encode("hello world") == [15339, 1917]
    assert counter.encoding("gpt-4o-mini").encode("hello world") == [24912, 2375]


def test_count_text_treats_special_token_text_as_text(counter: TokenCounter) -> None:
    assert counter.count_text("<|endoftext|>", "gpt-4o") > 1


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        ("gpt-4o", "o200k_base"),
        ("gpt-4o-mini-2024-07-18", "o200k_base"),
        ("gpt-4.1-nano", "o200k_base"),
        ("gpt-5", "o200k_base"),
        ("o1", "o200k_base"),
        ("o3-mini", "o200k_base"),
        ("o4-mini", "o200k_base"),
        ("openai/gpt-4o", "o200k_base"),
        ("gpt-4", "cl100k_base"),
        ("gpt-4-turbo", "cl100k_base"),
        ("gpt-3.5-turbo-0125", "cl100k_base"),
        ("text-embedding-3-small", "cl100k_base"),
        ("claude-3-5-sonnet-latest", "cl100k_base"),
        ("gemini-1.5-pro", "cl100k_base"),
    ],
)
def test_encoding_name_for_model(model: str, encoding: str) -> None:
    assert encoding_name_for(model) == encoding


def test_count_prompt_single_message_follows_openai_accounting(counter: TokenCounter) -> None:
    request = _request([{"role": "user", "content": "hello world"}])
    # 3 framing + "user" (1) + "hello world" (2) + 3 reply priming
    assert counter.count_prompt(request, "gpt-4o") == 9


def test_count_prompt_names_and_text_parts(counter: TokenCounter) -> None:
    request = _request(
        [
            {"role": "system", "content": "hello world"},
            {"role": "user", "name": "alice", "content": [{"type": "text", "text": "hello world"}]},
        ]
    )
    name = counter.count_text("alice", "gpt-4")
    system = 3 + 1 + 2
    user = 3 + 1 + (1 + name) + 2
    assert counter.count_prompt(request, "gpt-4") == system + user + 3


def test_count_prompt_images_are_a_fixed_estimate(counter: TokenCounter) -> None:
    def with_image(detail: str | None) -> ChatRequest:
        image: dict[str, Any] = {"url": "data:image/png;base64,AAAA"}
        if detail:
            image["detail"] = detail
        return _request([{"role": "user", "content": [{"type": "image_url", "image_url": image}]}])

    bare = 3 + 1 + 3
    assert counter.count_prompt(with_image("low"), "gpt-4o") == bare + IMAGE_TOKENS_LOW
    assert counter.count_prompt(with_image(None), "gpt-4o") == bare + IMAGE_TOKENS_DEFAULT


def test_count_prompt_counts_tools_and_tool_calls(counter: TokenCounter) -> None:
    messages: list[dict[str, Any]] = [{"role": "user", "content": "weather in Paris?"}]
    plain = counter.count_prompt(_request(messages), "gpt-4o")
    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
    assert counter.count_prompt(_request(messages, tools=[tool]), "gpt-4o") > plain + 10
    call = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    answered = [
        *messages,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ]
    assert counter.count_prompt(_request(answered), "gpt-4o") > plain + 6


def test_encodings_load_without_network(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("token counting tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(requests, "get", refuse)
    monkeypatch.setattr(requests.Session, "request", refuse)
    # Not through tiktoken's downloader or its cache either.
    monkeypatch.setattr(tiktoken.load, "read_file_cached", refuse)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "cache"))
    fresh = TokenCounter()
    assert fresh.count_text("hello world", "gpt-4o") == 2
    assert fresh.count_text("hello world", "gpt-4") == 2
    assert not (tmp_path / "cache").exists()


def test_encoding_is_loaded_once_per_counter(counter: TokenCounter) -> None:
    assert counter.encoding("gpt-4o") is counter.encoding("o3-mini")
    assert counter.encoding("gpt-4") is counter.encoding("claude-3-haiku")
    assert counter.encoding("gpt-4") is not counter.encoding("gpt-4o")


def test_encoding_specs_match_tiktoken(monkeypatch: pytest.MonkeyPatch) -> None:
    """The regex and special tokens are tiktoken's own, so counts match OpenAI's exactly."""
    wanted: dict[str, str] = {}

    def record(url: str, expected_hash: str | None = None) -> dict[bytes, int]:
        wanted[url.rsplit("/", 1)[-1]] = expected_hash or ""
        return {}

    monkeypatch.setattr(tiktoken_ext.openai_public, "load_tiktoken_bpe", record)
    for spec, build in [
        (CL100K_BASE, tiktoken_ext.openai_public.cl100k_base),
        (O200K_BASE, tiktoken_ext.openai_public.o200k_base),
    ]:
        reference = build()
        assert reference["name"] == spec.name
        assert reference["pat_str"] == spec.pat_str
        assert reference["special_tokens"] == spec.special_tokens
        assert wanted[f"{spec.name}.tiktoken"] == spec.sha256


def test_load_encoding_rejects_a_tampered_file(tmp_path: Path) -> None:
    shutil.copy(DATA_DIR / "cl100k_base.tiktoken", tmp_path / "cl100k_base.tiktoken")
    with (tmp_path / "cl100k_base.tiktoken").open("ab") as handle:
        handle.write(b"aGk= 100277\n")
    with pytest.raises(EncodingDataError, match="SHA-256"):
        load_encoding(CL100K_BASE, tmp_path)


def test_load_encoding_reports_a_missing_file(tmp_path: Path) -> None:
    spec = EncodingSpec("nope", "0" * 64, CL100K_BASE.pat_str, {})
    with pytest.raises(EncodingDataError, match="cannot read"):
        load_encoding(spec, tmp_path)


def test_preload_loads_only_the_encodings_of_the_models_given() -> None:
    counter = TokenCounter()
    counter.preload(["gpt-4o-mini", "gpt-4o"])
    assert counter.loaded_encodings == {"o200k_base"}
    counter.preload(["claude-sonnet-4"])  # no published tokenizer: counted with cl100k_base
    assert counter.loaded_encodings == {"o200k_base", "cl100k_base"}


def test_loaded_encoding_counts_after_its_ranks_are_released() -> None:
    encoding = load_encoding(O200K_BASE)
    assert encoding.encode_ordinary("hello world") == [24912, 2375]
    assert encoding.n_vocab > 199_000
