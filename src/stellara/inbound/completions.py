"""OpenAI's legacy Completions dialect (`POST /v1/completions`) ⇄ the canonical chat types.

For clients written before chat models (`gpt-3.5-turbo-instruct`, `davinci-002`): the prompt
becomes one user message and the answer comes back as a `text_completion`, whole or
streamed, whichever provider answers. Pure translators: `to_chat_request`, `to_text_completion`
and a `TextCompletionStreamWriter` per streamed request.

What translates, and what is refused with a 400 naming the parameter:

- Sent as their chat equivalents: `max_tokens`, `n`, `stop`, `temperature`, `top_p`,
  penalties, `logit_bias`, `seed`, `user`, `stream`, `stream_options`. `max_tokens` has no
  16-token default here: a chat model answers at its own length unless it is given.
- `logprobs: N` asks the chat model for `logprobs` with `top_logprobs: N`; its per-token
  answer is turned into the legacy arrays (`tokens`, `token_logprobs`, `top_logprobs` as
  maps, `text_offset` counted in characters of `text`). A provider that gives none leaves
  `logprobs: null`.
- `echo: true` puts the prompt before each choice's text (first, when streamed); with
  `logprobs` it is refused, as chat models give no logprobs for the prompt.
- `best_of` is accepted when it asks for nothing more than `n` does (1, or equal to `n`);
  `suffix` (insertion) is refused when not empty, as chat models cannot continue towards it.
- `prompt` must be one string (or a list of one): several prompts in one request, or token
  arrays, are refused. `max_tokens: 0` (used with `echo` to score a prompt) is refused too.
- A refusal's text becomes the choice's text with `finish_reason: content_filter`; any other
  chat finish reason than `length` or `content_filter` is `stop`.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import msgspec

from stellara.errors import InvalidRequestError
from stellara.schema.chat import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatRequest,
    ChunkChoice,
    OpaqueJSON,
    UserMessage,
)
from stellara.schema.completions import (
    CompletionChoice,
    CompletionLogprobs,
    CompletionRequest,
    TextCompletion,
)

_LEGACY_FINISH = frozenset({"stop", "length", "content_filter"})

# ---------------------------------------------------------------- request

PARAM_NAMES: Mapping[str, str] = MappingProxyType({"top_logprobs": "logprobs"})
"""This dialect's names of the canonical parameters it sets under another name, so a refused
or dropped parameter is named as the client sent it: `logprobs: N` is both canonical
`logprobs` and `top_logprobs`."""


def to_chat_request(request: CompletionRequest) -> ChatRequest:
    """The canonical request for a legacy completion request (see the module docstring).

    Raises:
        InvalidRequestError: A parameter chat models cannot honour, named in the message.
    """
    _refuse_untranslatable(request)
    wants_logprobs = request.logprobs is not None
    return ChatRequest(
        model=request.model,
        messages=[UserMessage(content=prompt_text(request))],
        stream=request.stream,
        stream_options=request.stream_options,
        temperature=request.temperature,
        top_p=request.top_p,
        n=request.n,
        stop=request.stop,
        max_tokens=request.max_tokens,
        presence_penalty=request.presence_penalty,
        frequency_penalty=request.frequency_penalty,
        logit_bias=request.logit_bias,
        logprobs=True if wants_logprobs else None,
        top_logprobs=request.logprobs if wants_logprobs else None,
        seed=request.seed,
        user=request.user,
    )


def prompt_text(request: CompletionRequest) -> str:
    """The one prompt of `request`, as text."""
    prompt = request.prompt
    if isinstance(prompt, str):
        return prompt
    if prompt is None or len(prompt) != 1:
        count = 0 if prompt is None else len(prompt)
        raise InvalidRequestError(
            f"prompt: one prompt per request is answered (got {count}); send each prompt "
            "in its own request.",
            param="prompt",
        )
    [only] = prompt
    if not isinstance(only, str):
        raise InvalidRequestError(
            "prompt: token arrays are not supported; send the prompt as text.", param="prompt"
        )
    return only


def _refuse_untranslatable(request: CompletionRequest) -> None:
    best_of = request.best_of
    if best_of is not None and best_of > 1 and best_of != (request.n or 1):
        raise InvalidRequestError(
            "best_of: chat models do not rank candidates; it must be 1 or equal to n.",
            param="best_of",
        )
    if request.suffix:
        raise InvalidRequestError(
            "suffix: chat models cannot insert text before a suffix; it is not supported.",
            param="suffix",
        )
    if request.echo and request.logprobs is not None:
        raise InvalidRequestError(
            "logprobs: with echo: true it would need the prompt's logprobs, which chat "
            "models do not give.",
            param="logprobs",
        )
    if request.max_tokens == 0:
        raise InvalidRequestError(
            "max_tokens: at least 1; scoring a prompt without a completion is not supported.",
            param="max_tokens",
        )


# ---------------------------------------------------------------- answers


class _TopLogprob(msgspec.Struct):
    token: str
    logprob: float


class _TokenLogprob(msgspec.Struct):
    token: str
    logprob: float
    top_logprobs: list[_TopLogprob] = []


class _ChatLogprobs(msgspec.Struct):
    content: list[_TokenLogprob] | None = None


_logprobs_decoder = msgspec.json.Decoder(_ChatLogprobs | None)


def completion_id(chat_id: str) -> str:
    """A legacy id (`cmpl-…`) for the chat answer `chat_id`."""
    return "cmpl-" + chat_id.removeprefix("chatcmpl-")


def legacy_finish_reason(reason: str | None, *, refused: bool = False) -> str | None:
    if reason is None:
        return None
    if refused:
        return "content_filter"
    return reason if reason in _LEGACY_FINISH else "stop"


def to_text_completion(completion: ChatCompletion, request: CompletionRequest) -> TextCompletion:
    """The `text_completion` for a whole chat answer to `request`."""
    echo = prompt_text(request) if request.echo else ""
    choices = []
    for choice in completion.choices:
        message = choice.message
        text = message.content or message.refusal or ""
        reason = legacy_finish_reason(choice.finish_reason, refused=bool(message.refusal))
        logprobs = _legacy_logprobs(choice.logprobs, 0) if request.logprobs is not None else None
        choices.append(CompletionChoice(echo + text, choice.index, logprobs, reason))
    return TextCompletion(
        id=completion_id(completion.id),
        object="text_completion",
        created=completion.created,
        model=completion.model,
        choices=choices,
        usage=completion.usage,
        system_fingerprint=completion.system_fingerprint,
    )


def _legacy_logprobs(raw: OpaqueJSON, offset: int) -> CompletionLogprobs | None:
    """A chat choice's logprobs in the legacy arrays, offsets counted from `offset`."""
    if isinstance(raw, msgspec.UnsetType):
        return None
    try:
        chat = _logprobs_decoder.decode(raw)
    except msgspec.DecodeError:
        return None  # not the shape OpenAI documents: nothing to translate
    if chat is None or chat.content is None:
        return None
    legacy = CompletionLogprobs([], [], [], [])
    for item in chat.content:
        legacy.tokens.append(item.token)
        legacy.token_logprobs.append(item.logprob)
        legacy.top_logprobs.append({top.token: top.logprob for top in item.top_logprobs})
        legacy.text_offset.append(offset)
        offset += len(item.token)
    return legacy


class TextCompletionStreamWriter:
    """Turns one request's canonical chunks into `text_completion` events; one per request.

    Every event with text or a finish reason goes out, each choice's text offsets counted on
    from its earlier events; with `echo`, a choice's first event starts with the prompt. The
    usage chunk (when `stream_options.include_usage` asked for it) is an event with no
    choices, as OpenAI sends it.
    """

    def __init__(self, request: CompletionRequest) -> None:
        self._echo = prompt_text(request) if request.echo else ""
        self._wants_logprobs = request.logprobs is not None
        self._offsets: dict[int, int] = {}  # per choice: characters sent so far
        self._refused: set[int] = set()  # choices whose text is a refusal

    def feed(self, chunk: ChatCompletionChunk) -> TextCompletion | None:
        """The event for `chunk`, or None when it carries nothing a legacy client reads."""
        choices = [c for c in map(self._choice, chunk.choices) if c is not None]
        if not choices and chunk.usage is None:
            return None
        return TextCompletion(
            id=completion_id(chunk.id),
            object="text_completion",
            created=chunk.created,
            model=chunk.model,
            choices=choices,
            usage=chunk.usage,
            system_fingerprint=chunk.system_fingerprint,
        )

    def _choice(self, choice: ChunkChoice) -> CompletionChoice | None:
        delta = choice.delta
        if delta.refusal:
            self._refused.add(choice.index)
        text = delta.content or delta.refusal or ""
        if choice.index not in self._offsets:
            text = self._echo + text
            self._offsets[choice.index] = 0
        refused = choice.index in self._refused
        reason = legacy_finish_reason(choice.finish_reason, refused=refused)
        if not text and reason is None:
            return None
        offset = self._offsets[choice.index]
        logprobs = _legacy_logprobs(choice.logprobs, offset) if self._wants_logprobs else None
        self._offsets[choice.index] = offset + len(text)
        return CompletionChoice(text, choice.index, logprobs, reason)
