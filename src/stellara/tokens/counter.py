"""`TokenCounter`: prompt token estimates before a call, with OpenAI's own BPE files, offline.

The provider's reported usage is what gets billed and settled; this estimate exists for what
must be decided before the call (reserving tokens against a rate limit, refusing a prompt that
cannot fit the model's context window).

Encodings:
- `o200k_base` for the GPT-4o, GPT-4.1, GPT-4.5, GPT-5 and o-series models;
- `cl100k_base` for GPT-4, GPT-3.5 and the embedding models, and as the estimate for every
  other model. Anthropic and Google do not publish their tokenizers; cl100k_base counts English
  within roughly 10-20% of both, which is close enough for a reservation that is settled
  against real usage afterwards.

The BPE files ship in `stellara/tokens/data/` (see `scripts/vendor_bpe.py` for where they come
from). They are read from there and checked against the SHA-256 that tiktoken itself expects,
never fetched: `tiktoken.get_encoding` would download them on first use.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from importlib import resources
from typing import TYPE_CHECKING

import msgspec
import tiktoken

from stellara.schema.chat import (
    AssistantMessage,
    ChatRequest,
    FunctionCall,
    FunctionMessage,
    ImagePart,
    Message,
    TextPart,
    Tool,
    ToolCall,
)
from stellara.tokens.budget import BoundedCount

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

# OpenAI's accounting for the chat format: every message is wrapped in
# <|start|>{role/name}\n{content}<|end|>\n (3 tokens), a `name` costs 1 more, and every reply
# is primed with <|start|>assistant<|message|> (3 tokens).
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING_TOKENS = 3
# Image size is unknown without decoding it. OpenAI bills 85 tokens at `detail: low`, and
# 85 + 170 per 512 px tile at high detail: 765 for a 1024x1024 image, the common case.
IMAGE_TOKENS_LOW = 85
IMAGE_TOKENS_DEFAULT = 765
# Each tool definition is rendered into the system prompt with a little framing around its
# JSON; OpenAI does not document the format, this is the observed order of magnitude.
TOKENS_PER_TOOL = 8

ENDOFTEXT = "<|endoftext|>"
FIM_PREFIX = "<|fim_prefix|>"
FIM_MIDDLE = "<|fim_middle|>"
FIM_SUFFIX = "<|fim_suffix|>"
ENDOFPROMPT = "<|endofprompt|>"


@dataclass(frozen=True, slots=True)
class EncodingSpec:
    """What tiktoken's `tiktoken_ext.openai_public` builds an encoding from, minus the URL."""

    name: str
    sha256: str
    pat_str: str
    special_tokens: dict[str, int]


CL100K_BASE = EncodingSpec(
    name="cl100k_base",
    sha256="223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    pat_str=(
        r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+"""
        r"""| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
    ),
    special_tokens={
        ENDOFTEXT: 100257,
        FIM_PREFIX: 100258,
        FIM_MIDDLE: 100259,
        FIM_SUFFIX: 100260,
        ENDOFPROMPT: 100276,
    },
)
O200K_BASE = EncodingSpec(
    name="o200k_base",
    sha256="446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    pat_str="|".join(
        [
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
            r"""\p{N}{1,3}""",
            r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
            r"""\s*[\r\n]+""",
            r"""\s+(?!\S)""",
            r"""\s+""",
        ]
    ),
    special_tokens={ENDOFTEXT: 199999, ENDOFPROMPT: 200018},
)
ENCODINGS = {spec.name: spec for spec in (CL100K_BASE, O200K_BASE)}

# Model name prefixes that use o200k_base; everything else gets cl100k_base.
_O200K_PREFIXES = ("gpt-4o", "chatgpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4")


class EncodingDataError(Exception):
    """A shipped BPE file is missing or does not match its expected hash (a broken install)."""


def encoding_name_for(model: str) -> str:
    """The encoding `TokenCounter` uses for `model` (see the module docstring for why)."""
    name = model.strip().lower().rsplit("/", 1)[-1]
    if name.startswith(_O200K_PREFIXES):
        return O200K_BASE.name
    return CL100K_BASE.name


def load_encoding(spec: EncodingSpec, data_dir: Traversable | None = None) -> tiktoken.Encoding:
    """Build `spec`'s encoding from its shipped `.tiktoken` file, without any network.

    Raises:
        EncodingDataError: the file is missing or its SHA-256 is not the one tiktoken expects.
    """
    folder = data_dir if data_dir is not None else resources.files(__package__) / "data"
    path = folder / f"{spec.name}.tiktoken"
    try:
        contents = path.read_bytes()
    except OSError as exc:
        raise EncodingDataError(f"{spec.name}: cannot read {path}: {exc}") from exc
    actual = hashlib.sha256(contents).hexdigest()
    if actual != spec.sha256:
        raise EncodingDataError(f"{spec.name}: {path} has SHA-256 {actual}, want {spec.sha256}")
    # The `.tiktoken` format, as `tiktoken.load.load_tiktoken_bpe` reads it: "<base64> <rank>"
    # per line. Parsed here because that function also copies the file into a cache directory.
    ranks = {
        base64.b64decode(token): int(rank)
        for token, rank in (line.split() for line in contents.splitlines() if line)
    }
    encoding = tiktoken.Encoding(
        name=spec.name,
        pat_str=spec.pat_str,
        mergeable_ranks=ranks,
        special_tokens=spec.special_tokens,
    )
    # The encoder copied the ranks into its Rust core; tiktoken keeps our dict only to pickle
    # the encoding, which we never do. Emptied, it frees ~27 MB per process for o200k_base.
    ranks.clear()
    return encoding


class TokenCounter:
    """Counts tokens of text and chat prompts; one per app, shared by every request.

    Encodings are loaded on first use (about 0.1-0.3 s each) and kept on the instance.
    """

    def __init__(self, data_dir: Traversable | None = None) -> None:
        self._data_dir = data_dir
        self._encodings: dict[str, tiktoken.Encoding] = {}

    def encoding(self, model: str) -> tiktoken.Encoding:
        """The encoding used to count `model`'s tokens, loaded on first use."""
        name = encoding_name_for(model)
        encoding = self._encodings.get(name)
        if encoding is None:
            encoding = load_encoding(ENCODINGS[name], self._data_dir)
            self._encodings[name] = encoding
        return encoding

    @property
    def loaded_encodings(self) -> frozenset[str]:
        """The names of the encodings in memory (each holds 30-50 MB)."""
        return frozenset(self._encodings)

    def preload(self, models: Iterable[str]) -> None:
        """Load now the encodings `models` are counted with (blocking: run it in a thread at
        start-up); any other loads on first use. Each costs 30-50 MB, so only those."""
        for model in models:
            self.encoding(model)

    def count_text(self, text: str, model: str) -> int:
        """Tokens in `text` for `model`: exact up to `budget.COUNTED_BYTES`, estimated from
        samples past that (see `stellara.tokens.budget`)."""
        return self.count_texts((text,), model)

    def count_texts(self, texts: Sequence[str], model: str) -> int:
        """Tokens in all of `texts` for `model`, within one request's budgets."""
        count = BoundedCount(self.encoding(model))
        count.each(texts, count.text)
        return count.total()

    def count_prompt(self, request: ChatRequest, model: str) -> int:
        """Estimated prompt tokens of `request` sent to `model`, by OpenAI's chat accounting.

        Text is counted exactly within the budgets of `stellara.tokens.budget`, and estimated
        from samples beyond them; images by a fixed estimate; tool and response-format
        schemas by their JSON. Audio and file parts are not counted (their size is only
        known after decoding them).
        """
        count = BoundedCount(self.encoding(model))
        count.fixed(REPLY_PRIMING_TOKENS)
        count.each(request.messages, partial(_add_message, count))
        count.each(request.tools or (), partial(_add_tool, count))
        if request.response_format is not None and request.response_format.json_schema:
            _add_json(count, request.response_format.json_schema.schema)
        return count.total()


def _add_message(count: BoundedCount, message: Message) -> None:
    """A message's framing, role, name and content."""
    role = type(message).__struct_config__.tag
    count.fixed(TOKENS_PER_MESSAGE)
    count.text(role if isinstance(role, str) else "")
    name = getattr(message, "name", None)
    if name and not isinstance(message, FunctionMessage):
        count.fixed(TOKENS_PER_NAME)
        count.text(name)
    elif isinstance(message, FunctionMessage):
        count.text(message.name)
    content = message.content
    if isinstance(content, str):
        count.text(content)
    elif content is not None:
        count.each(content, partial(_add_part, count))
    if isinstance(message, AssistantMessage):
        count.each(message.tool_calls or (), partial(_add_call, count))
        if message.function_call is not None:
            _add_call(count, message.function_call)


def _add_part(count: BoundedCount, part: object) -> None:
    if isinstance(part, TextPart):
        count.text(part.text)
    elif isinstance(part, ImagePart):
        count.fixed(IMAGE_TOKENS_LOW if part.image_url.detail == "low" else IMAGE_TOKENS_DEFAULT)
    else:
        refusal = getattr(part, "refusal", None)
        if isinstance(refusal, str):
            count.text(refusal)


def _add_call(count: BoundedCount, call: ToolCall | FunctionCall) -> None:
    function = call.function if isinstance(call, ToolCall) else call
    count.text(function.name)
    count.text(function.arguments)


def _add_tool(count: BoundedCount, tool: Tool) -> None:
    function = tool.function
    count.fixed(TOKENS_PER_TOOL)
    count.text(function.name)
    count.text(function.description or "")
    _add_json(count, function.parameters)


def _add_json(count: BoundedCount, value: object) -> None:
    if value is not None:
        # Compact JSON: the schema as it appears in the rendered prompt, give or take spacing.
        count.text(msgspec.json.encode(value).decode())
