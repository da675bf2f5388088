"""Thinking in the Gemini simulator: `thinkingConfig` checks, thought tokens, thought signatures.

Like Gemini, by model generation (read from the name; a name without one counts as the newest):

* before 2.5 a model does not think and refuses a `thinkingConfig`; 2.5 takes a
  `thinkingBudget` (0 is off, except on Pro models, which only think), Gemini 3 also a
  `thinkingLevel`; a request may not set both;
* a thinking model reports `thoughtsTokenCount` and signs the function calls it makes
  (`thoughtSignature` on the part, standard base64); Gemini 3 refuses a request whose current
  turn (everything after the last user message that is not only function results) has a
  model turn whose first function call lacks its signature, or carries one it did not issue.
  Signatures are an HMAC of the call, so any simulator instance recognises its own.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

_VERSION = re.compile(r"gemini-(\d+)(?:\.(\d+))?")
_NEWEST = (99, 0)
_THINKING_SINCE = (2, 5)
_LEVELS_SINCE = (3, 0)
_LEVEL_TOKENS = {"MINIMAL": 4, "LOW": 16, "MEDIUM": 32, "HIGH": 64, "XHIGH": 128}
_DYNAMIC_TOKENS = 32  # no budget, or -1: the model decides
_TOKENS_PER_BUDGET = 128
_FROM_URL_SAFE = str.maketrans("-_", "+/")
_SIGNATURES_DOC = "https://ai.google.dev/gemini-api/docs/thought-signatures"


def _version(model: str) -> tuple[int, int]:
    found = _VERSION.search(model)
    return (int(found.group(1)), int(found.group(2) or 0)) if found else _NEWEST


def is_thinking(model: str) -> bool:
    """Whether the model thinks (and so signs its function calls)."""
    return _version(model) >= _THINKING_SINCE


def thinking_problem(model: str, budget: int | None, level: str | None) -> str | None:
    """Gemini's message refusing this `thinkingConfig` for `model`, or None when it is fine."""
    if budget is None and level is None:
        return None
    if not is_thinking(model):
        return "Thinking is not supported for this model."
    if budget is not None and level is not None:
        return "You can only set either thinking budget or thinking level."
    if level is not None:
        if _version(model) < _LEVELS_SINCE:
            return "Thinking level is not supported for this model."
        if level.upper() not in _LEVEL_TOKENS:
            where = "generation_config.thinking_config.thinking_level"
            return f"Invalid value at '{where}' ({level!r})"
    if budget == 0 and "-pro" in model:
        return "Budget 0 is invalid. This model only works in thinking mode."
    return None


def thought_tokens(model: str, budget: int | None, level: str | None) -> int:
    """The `thoughtsTokenCount` of an answer: more for a larger budget or higher level."""
    if not is_thinking(model):
        return 0
    if level is not None:
        return _LEVEL_TOKENS.get(level.upper(), _DYNAMIC_TOKENS)
    if budget is None or budget < 0:
        return _DYNAMIC_TOKENS
    return -(-budget // _TOKENS_PER_BUDGET)


@dataclass(frozen=True, slots=True)
class SentCall:
    """A `functionCall` part of a request, as the signature check needs it."""

    name: str
    args: Mapping[str, Any]
    signature: str | None


@dataclass(frozen=True, slots=True)
class SentContent:
    """A request content: its role, whether it opens a turn, and its function calls."""

    role: str | None
    is_user_message: bool  # a user content with more than function results
    calls: Sequence[SentCall]


class ThoughtSigner:
    """Issues and checks thought signatures with one key.

    Args:
        key: The HMAC key; a new simulator gets a new one.
    """

    def __init__(self, key: bytes) -> None:
        self._key = key

    def sign(self, name: str, args: Mapping[str, Any]) -> str:
        """The signature of a function call, as Gemini's: padded standard base64."""
        return base64.b64encode(self._digest(name, args)).decode()

    def _digest(self, name: str, args: Mapping[str, Any]) -> bytes:
        call = orjson.dumps({"name": name, "args": args}, option=orjson.OPT_SORT_KEYS)
        return hashlib.blake2b(call, key=self._key, digest_size=40).digest()

    def turn_problem(self, model: str, contents: Sequence[SentContent]) -> str | None:
        """Gemini 3's message refusing the current turn's signatures, or None when fine."""
        if _version(model) < _LEVELS_SINCE:
            return None
        starts = [at for at, content in enumerate(contents) if content.is_user_message]
        first = starts[-1] + 1 if starts else 0
        for at in range(first, len(contents)):
            content = contents[at]
            if content.role != "model" or not content.calls:
                continue
            call = content.calls[0]
            if call.signature is None:
                return (
                    "Function call is missing a thought_signature in functionCall parts. "
                    "This is required for tools to work correctly, and missing "
                    "thought_signature may lead to degraded model performance. Additional "
                    f"data, function call `default_api:{call.name}` , position {at + 1}. "
                    f"Please refer to {_SIGNATURES_DOC} for more details."
                )
            for signed in content.calls:
                if signed.signature is None:
                    continue
                if _bytes_of(signed.signature) != self._digest(signed.name, signed.args):
                    return "Corrupted thought signature."
        return None


def _bytes_of(signature: str) -> bytes | None:
    """A signature's bytes; like any protobuf `bytes` field in JSON, Gemini reads base64 in
    either alphabet, padded or not. None when it is not base64 at all."""
    standard = signature.translate(_FROM_URL_SAFE)
    try:
        return base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
    except binascii.Error:
        return None
