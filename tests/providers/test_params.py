"""The parameter policy is true: each provider type's table against its own translator.

For every canonical parameter and provider type, a request setting it is translated by the
provider's request builder: a parameter marked passed arrives under its own name with its
value, one marked translated changes the wire body, and one marked droppable or refused is
flagged by the policy and would not reach the provider anyway (the body is the same as without
it, or the translator refuses it), which is the silent drop the policy turns into a 400 or a
reported drop.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from stellara.errors import InvalidRequestError
from stellara.providers import provider_types
from stellara.providers.anthropic.chat import build_messages_body
from stellara.providers.google.chat import build_generate_body
from stellara.providers.google.embeddings import build_batch_embed_body, to_embeddings_response
from stellara.providers.openai.chat import build_chat_body
from stellara.providers.openai.embeddings import build_embeddings_body
from stellara.providers.params import (
    EMBEDDING_POLICY_PARAMS,
    POLICY_PARAMS,
    UNKNOWN_PARAMS,
    ParamPolicy,
    ParamRule,
)
from stellara.schema.chat import ChatRequest
from stellara.schema.embeddings import EmbeddingsRequest

WIRE_BODIES: dict[str, Callable[[ChatRequest], bytes]] = {
    "openai": lambda r: build_chat_body(r, "gpt-4o"),
    "azure": lambda r: build_chat_body(r, "prod-gpt4o"),  # the Azure adapter is OpenAI's
    "anthropic": lambda r: build_messages_body(r, "claude-sonnet-4-5", default_max_tokens=1024),
    "google": lambda r: build_generate_body(r, "gemini-2.5-flash"),
}

TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
# A value of each parameter that asks the provider for something beyond its default.
SAMPLES: dict[str, Any] = {
    "temperature": 1.5,
    "top_p": 0.5,
    "n": 2,
    "stop": ["END"],
    "max_tokens": 77,
    "max_completion_tokens": 88,
    "presence_penalty": 0.5,
    "frequency_penalty": 0.25,
    "logit_bias": {"50256": -100},
    "logprobs": True,
    "top_logprobs": 3,
    "seed": 7,
    "user": "user-1",
    "tools": TOOLS,
    "tool_choice": "required",
    "parallel_tool_calls": False,
    "response_format": {"type": "json_object"},
    "reasoning_effort": "high",
    "verbosity": "low",
    "service_tier": "flex",
    "store": True,
    "metadata": {"team": "a"},
    "modalities": ["text", "audio"],
    "audio": {"voice": "alloy", "format": "wav"},
    "prediction": {"type": "content", "content": "draft"},
    "web_search_options": {"search_context_size": "low"},
    "prompt_cache_key": "prefix-1",
    "safety_identifier": "hashed-user",
    "thinking": {"type": "enabled", "budget_tokens": 2048},
    "top_k": 5,
    "unknown_params": {"min_p": 0.1, "chat_template_kwargs": {"enable_thinking": False}},
}
# Parameters that mean something only beside another: their baseline has it already.
BASES: dict[str, dict[str, Any]] = {
    "tool_choice": {"tools": TOOLS},
    "parallel_tool_calls": {"tools": TOOLS},
    "top_logprobs": {"logprobs": True},
}
CASES = [(kind, name) for kind in sorted(provider_types()) for name in POLICY_PARAMS]


def _request(**fields: Any) -> ChatRequest:
    body = {"model": "public", "messages": [{"role": "user", "content": "hi"}], **fields}
    return msgspec.json.decode(json.dumps(body), type=ChatRequest)


def _wire(kind: str, request: ChatRequest) -> dict[str, Any] | None:
    """The provider's wire body, or None when its translator refuses the request."""
    try:
        body: dict[str, Any] = json.loads(WIRE_BODIES[kind](request))
    except InvalidRequestError:
        return None
    return body


def _policy(kind: str) -> ParamPolicy:
    return provider_types()[kind].params


def test_every_provider_type_has_a_body_builder_here():
    assert set(WIRE_BODIES) == set(provider_types())


def test_policies_cover_every_canonical_parameter_and_samples_cover_them_too():
    assert set(SAMPLES) == set(POLICY_PARAMS)
    fields = {f.name for f in msgspec.structs.fields(ChatRequest)}
    # The request itself, and the deprecated function fields the route turns into tools.
    request_itself = {"model", "messages", "stream", "stream_options"}
    assert fields - set(POLICY_PARAMS) == request_itself | {"functions", "function_call"}
    for kind in provider_types():
        assert set(_policy(kind).rules) == set(POLICY_PARAMS), kind


@pytest.mark.parametrize(("kind", "name"), CASES)
def test_policy_matches_what_the_translator_sends(kind: str, name: str):
    rule = _policy(kind).rule(name)
    base = BASES.get(name, {})
    request = _request(**base, **{name: SAMPLES[name]})
    without = _wire(kind, _request(**base))
    sent = _wire(kind, request)
    flagged = [u.name for u in _policy(kind).unsupported(request)]
    if rule.at_most is not None:
        # Passed as given up to the bound; the sample (above it) is the policy's to refuse.
        within = _wire(kind, _request(**{name: rule.at_most}))
        assert within is not None
        assert within[name] == rule.at_most
        assert flagged == [name]
    elif rule.handling in ("passed", "translated"):
        assert name not in flagged
        assert sent is not None
        assert sent != without, f"{kind} marks {name} {rule.handling}, but does not send it"
        if rule.handling == "passed":
            # Undeclared fields go at the top level under their own names.
            expected = SAMPLES[name] if name == UNKNOWN_PARAMS else {name: SAMPLES[name]}
            assert {key: sent[key] for key in expected} == expected
    else:
        assert name in flagged
        assert sent is None or sent == without, f"{kind} sends {name}, marked {rule.handling}"


@pytest.mark.parametrize("kind", sorted(provider_types()))
def test_values_that_ask_nothing_are_never_flagged(kind: str):
    policy = _policy(kind)
    for name, rule in policy.rules.items():
        for value in rule.same_as_absent:
            request = _request(**{name: msgspec.to_builtins(value)})
            assert policy.unsupported(request) == (), (kind, name, value)


def test_a_request_setting_nothing_unsupported_reads_no_value():
    assert _policy("anthropic").unsupported(_request(temperature=0.2, tools=TOOLS)) == ()


def test_an_explicit_null_of_an_opaque_parameter_asks_nothing():
    request = msgspec.json.decode(
        b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "audio": null}',
        type=ChatRequest,
    )
    assert _policy("google").unsupported(request) == ()


def test_a_policy_naming_an_unknown_parameter_is_refused():
    with pytest.raises(ValueError, match="top_q"):
        ParamPolicy({"top_q": ParamRule("droppable")})


# ---------------------------------------------------------------- embeddings

EMBEDDING_BODIES: dict[str, Callable[[EmbeddingsRequest], bytes]] = {
    "openai": lambda r: build_embeddings_body(r, "text-embedding-3-small"),
    "azure": lambda r: build_embeddings_body(r, "prod-embed"),
    "google": lambda r: build_batch_embed_body(r, "text-embedding-004"),
}
EMBEDDING_SAMPLES: dict[str, Any] = {"encoding_format": "base64", "dimensions": 8, "user": "u-1"}
EMBEDDING_CASES = [(k, n) for k in sorted(EMBEDDING_BODIES) for n in EMBEDDING_POLICY_PARAMS]


def _embeddings_request(**fields: Any) -> EmbeddingsRequest:
    body = {"model": "public", "input": "hi", **fields}
    return msgspec.json.decode(json.dumps(body), type=EmbeddingsRequest)


def _embeddings_policy(kind: str) -> ParamPolicy:
    policy = provider_types()[kind].embedding_params
    assert policy is not None
    return policy


def test_the_provider_types_that_embed_have_an_embeddings_policy_covering_every_parameter():
    serving = {k for k, t in provider_types().items() if t.embedding_params is not None}
    assert serving == set(EMBEDDING_BODIES)
    assert (
        set(EMBEDDING_SAMPLES)
        == set(EMBEDDING_POLICY_PARAMS)
        == {f.name for f in msgspec.structs.fields(EmbeddingsRequest)} - {"model", "input"}
    )
    for kind in serving:
        assert set(_embeddings_policy(kind).rules) == set(EMBEDDING_POLICY_PARAMS), kind


@pytest.mark.parametrize(("kind", "name"), EMBEDDING_CASES)
def test_embeddings_policy_matches_what_the_translator_sends(kind: str, name: str):
    rule = _embeddings_policy(kind).rule(name)
    request = _embeddings_request(**{name: EMBEDDING_SAMPLES[name]})
    sent = json.loads(EMBEDDING_BODIES[kind](request))
    without = json.loads(EMBEDDING_BODIES[kind](_embeddings_request()))
    flagged = [u.name for u in _embeddings_policy(kind).unsupported(request)]
    if rule.handling == "passed":
        assert flagged == []
        assert sent[name] == EMBEDDING_SAMPLES[name]
    elif (kind, name) == ("google", "encoding_format"):
        # Honoured by the gateway itself, in the answer: Gemini only sends floats.
        answer = b'{"embeddings": [{"values": [0.5, -1.0]}]}'
        converted = to_embeddings_response(
            answer, request, model="m", provider="gemini", prompt_tokens=1
        )
        assert isinstance(converted.data[0].embedding, str)
    elif rule.handling == "translated":
        assert flagged == []
        assert sent != without
    else:
        assert flagged == [name]
        assert sent == without, f"{kind} sends {name}, marked {rule.handling}"
