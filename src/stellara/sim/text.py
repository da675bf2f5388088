"""Deterministic content for the simulators: answer text, tool arguments, embeddings, token counts.

Everything here is pure and independent of any wire format, so every simulated provider gives
the same answer to the same prompt, and tests can assert exact text.

Token accounting is an approximation, chosen to be cheap and predictable rather than faithful to
any real tokenizer:

* A *piece* is one generated token: a word with its leading whitespace. The answer is a list of
  pieces, streamed one piece per chunk, so ``completion_tokens == len(pieces)``.
* Prompt text counts ``ceil(len(text) / 4)`` tokens (:func:`count_tokens`), each message adds
  :data:`MESSAGE_OVERHEAD_TOKENS`, each image or audio part counts :data:`IMAGE_TOKENS`, and the
  reply is primed with :data:`REPLY_PRIMING_TOKENS`, like OpenAI's published counting recipe.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

MESSAGE_OVERHEAD_TOKENS = 3
"""Tokens added for each message's role and framing."""

REPLY_PRIMING_TOKENS = 3
"""Tokens added once per request for the assistant reply header."""

IMAGE_TOKENS = 85
"""Tokens counted for each non-text content part (OpenAI's price of a low-detail image)."""

_PIECE = re.compile(r"\s*\S+")
_WORD = re.compile(r"\w+")
_ECHO_WORDS = 6
_MAX_SCHEMA_DEPTH = 8

# 64 words so that one hash byte picks one word with a mask.
_VOCABULARY = (
    "the", "gateway", "answers", "quickly", "and", "routes", "each", "request", "to", "a",
    "healthy", "provider", "while", "tokens", "stream", "back", "over", "one", "connection", "with",
    "care", "so", "every", "client", "sees", "steady", "latency", "under", "load", "because",
    "limits", "keep", "traffic", "fair", "for", "all", "teams", "that", "share", "budget",
    "cache", "hits", "save", "time", "retries", "recover", "from", "transient", "errors", "when",
    "upstream", "models", "stall", "or", "fail", "this", "simulated", "reply", "is", "stable",
    "across", "runs", "in", "tests",
)  # fmt: skip
_SPACED_VOCABULARY = tuple(f" {word}" for word in _VOCABULARY)


@dataclass(frozen=True, slots=True)
class Completion:
    """A generated answer: its pieces (one per token) and why generation stopped.

    Attributes:
        pieces: The answer split into tokens; joining them gives the text.
        finish_reason: ``"length"`` when ``max_tokens`` cut the answer, else ``"stop"``.
    """

    pieces: tuple[str, ...]
    finish_reason: Literal["stop", "length"]

    @property
    def text(self) -> str:
        """The answer text."""
        return "".join(self.pieces)


def seed_of(*parts: bytes) -> bytes:
    """Return a stable 16-byte seed for the given parts.

    Uses BLAKE2b rather than ``hash()`` so answers survive interpreter restarts and
    ``PYTHONHASHSEED``.
    """
    digest = hashlib.blake2b(digest_size=16)
    for part in parts:
        digest.update(len(part).to_bytes(4, "little"))
        digest.update(part)
    return digest.digest()


def count_tokens(text: str) -> int:
    """Approximate the tokens in ``text`` as one per four characters, rounded up."""
    return (len(text) + 3) // 4


def split_pieces(text: str) -> list[str]:
    """Split ``text`` into pieces (words with their leading whitespace).

    Joining the result gives back ``text`` without its trailing whitespace.
    """
    return _PIECE.findall(text)


def words_of(text: str) -> list[str]:
    """Return the word characters runs of ``text``, dropping punctuation."""
    return _WORD.findall(text)


def prose_pieces(seed: bytes, lead: str, n_tokens: int) -> list[str]:
    """Build an answer of ``n_tokens`` pieces: the start of ``lead``, then filler words.

    Args:
        seed: Chooses the filler words; see :func:`seed_of`.
        lead: Text the answer starts with, usually the user's words echoed back.
        n_tokens: Length of the answer in pieces.
    """
    pieces = split_pieces(lead)[:n_tokens]
    block = 0
    while len(pieces) < n_tokens:
        digest = hashlib.blake2b(seed + block.to_bytes(4, "little")).digest()
        pieces.extend(_SPACED_VOCABULARY[byte & 63] for byte in digest[: n_tokens - len(pieces)])
        block += 1
    if pieces:
        pieces[0] = pieces[0].lstrip()
        if not pieces[-1].endswith("."):
            pieces[-1] += "."
    return pieces


def echo_of(text: str) -> str:
    """Return the first few words of ``text``, the echo an answer starts with."""
    return " ".join(text.split()[:_ECHO_WORDS])


def finish(pieces: Sequence[str], *, max_tokens: int | None, stop: Sequence[str]) -> Completion:
    """Apply ``max_tokens`` and stop strings to a full answer, as generation would.

    A stop string found within the first ``max_tokens`` pieces wins: the text is cut just before
    it and the finish reason is ``"stop"``.
    """
    is_cut = max_tokens is not None and len(pieces) > max_tokens
    kept = tuple(pieces[:max_tokens] if is_cut else pieces)
    if stop:
        text = "".join(kept)
        found = [at for at in (text.find(s) for s in stop if s) if at >= 0]
        if found:
            return Completion(_truncate(kept, min(found)), "stop")
    return Completion(kept, "length" if is_cut else "stop")


def sample_value(
    schema: Mapping[str, Any],
    words: Sequence[str],
    depth: int = 0,
    *,
    root: Mapping[str, Any] | None = None,
) -> Any:
    """Build a value that satisfies a (simple) JSON schema, deterministically.

    Strings take a word from ``words`` (the last one first, which in a question is usually the
    subject: "weather in Paris" → "Paris"), numbers are 1, booleans true, arrays hold one item and
    objects fill every property plus any other required key. A ``$ref`` into the root schema's
    ``$defs`` (or ``definitions``), as pydantic writes nested models, is followed.

    Args:
        schema: A JSON schema, e.g. a function's ``parameters``.
        words: Words of the prompt to draw strings from; ``"example"`` when empty.
        depth: Recursion depth, to stop on self-referencing schemas.
        root: The schema ``$ref`` points into; ``schema`` itself when not given.
    """
    root = schema if root is None else root
    target = _referenced(schema, root)
    if target is not None:
        return (
            sample_value(target, words, depth + 1, root=root) if depth < _MAX_SCHEMA_DEPTH else {}
        )
    if "const" in schema:
        return schema["const"]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    for combinator in ("anyOf", "oneOf", "allOf"):
        options = schema.get(combinator)
        if isinstance(options, list) and options and isinstance(options[0], Mapping):
            return sample_value(options[0], words, depth + 1, root=root)
    kind = _schema_type(schema)
    if kind == "object":
        return sample_object(schema, words, depth, root=root) if depth < _MAX_SCHEMA_DEPTH else {}
    if kind == "array":
        items = schema.get("items")
        if isinstance(items, Mapping) and depth < _MAX_SCHEMA_DEPTH:
            return [sample_value(items, words, depth + 1, root=root)]
        return []
    if kind in ("integer", "number"):
        return 1
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return words[-1] if words else "example"


def sample_object(
    schema: Mapping[str, Any],
    words: Sequence[str],
    depth: int = 0,
    *,
    root: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Build an object for an object schema, such as a function's ``parameters``.

    An empty schema gives ``{}``; see :func:`sample_value` for how values are chosen.
    """
    root = schema if root is None else root
    properties = schema.get("properties")
    result: dict[str, Any] = {}
    string_count = 0
    if isinstance(properties, Mapping):
        for name, sub in properties.items():
            if not isinstance(sub, Mapping):
                result[name] = "example"
                continue
            # Successive string fields take successive words from the end of the prompt.
            pool = words[: len(words) - string_count] if words else words
            if _schema_type(sub) == "string" and "enum" not in sub and "const" not in sub:
                string_count += 1
            result[name] = sample_value(sub, pool or words, depth + 1, root=root)
    required = schema.get("required")
    if isinstance(required, list):
        for name in required:
            if isinstance(name, str) and name not in result:
                result[name] = "example"
    return result


def embed(text: str, dimensions: int) -> list[float]:
    """Return a deterministic unit-length embedding of ``text``.

    Feature hashing of the lower-cased words: each word adds ±1 at a few hashed positions.
    Texts sharing words therefore have a high cosine similarity and identical word bags are
    identical vectors, which is what semantic-cache tests need. A text without words gets a
    fixed vector.
    """
    vector = [0.0] * dimensions
    for word in words_of(text.lower()):
        digest = hashlib.blake2b(word.encode(), digest_size=24).digest()
        for at in range(0, 24, 3):
            slot = int.from_bytes(digest[at : at + 2], "little") % dimensions
            vector[slot] += 1.0 if digest[at + 2] & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vector))
    if norm == 0.0:
        vector[0] = 1.0
        return vector
    return [v / norm for v in vector]


def _truncate(pieces: Sequence[str], at: int) -> tuple[str, ...]:
    kept: list[str] = []
    length = 0
    for piece in pieces:
        if length + len(piece) >= at:
            if at > length:
                kept.append(piece[: at - length])
            break
        kept.append(piece)
        length += len(piece)
    return tuple(kept)


def _referenced(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The schema a local ``$ref`` (``#`` or ``#/$defs/Name``) names, or None."""
    ref = schema.get("$ref")
    if not isinstance(ref, str) or not ref.startswith("#"):
        return None
    target: Any = root
    for part in filter(None, ref.removeprefix("#").split("/")):
        target = target.get(part) if isinstance(target, Mapping) else None
    return target if isinstance(target, Mapping) else None


def _schema_type(schema: Mapping[str, Any]) -> str | None:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None and "properties" in schema:
        return "object"
    return kind if isinstance(kind, str) else None
