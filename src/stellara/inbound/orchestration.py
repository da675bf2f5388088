"""The orchestration API's prompt body ⇄ the canonical chat request.

`POST /ai-orchestration/generate` (and `…/generate-with-fallback`) takes, beside a chat
request, the body of the orchestration API Stellara replaces, so its clients move over
unchanged: `{"prompt", "userId", "model", "provider"?, "options"?}`. A pure translator:
`to_chat_request` makes the canonical request; the route decides who `userId` may be and turns
`provider` into its provider filter.

- `prompt` becomes one user message; `options.systemPrompt` a system message before it.
- `model` is required: it names one of the gateway's public models. There is no default, as
  the replaced API's default was one vendor's model name, which means nothing here.
- `options` takes that API's camel-case names: `temperature`, `maxTokens`, `topP`, `stop`,
  `presencePenalty`, `frequencyPenalty`, `seed`, `stream`, `systemPrompt`. Any other name is
  refused with a 400 naming it (a snake-case spelling is pointed to its camel-case one), never
  dropped; refusals of the parameter policy name the option as sent (`PARAM_NAMES`).
- `userId` is not sent to providers: it is the gateway's user, not the provider's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Annotated

import msgspec
from msgspec import Meta, Struct, field

from stellara.errors import InvalidRequestError
from stellara.inbound.bounds import MAX_STOP_SEQUENCES
from stellara.schema.chat import (
    ChatRequest,
    Message,
    Penalty,
    PositiveInt,
    SystemMessage,
    Temperature,
    UserMessage,
)

MAX_USER_ID_CHARS = 256  # a user id becomes state-backend keys when the master key names one
UserId = Annotated[str, Meta(min_length=1, max_length=MAX_USER_ID_CHARS)]
Name = Annotated[str, Meta(min_length=1)]


class PromptOptions(Struct, forbid_unknown_fields=True, omit_defaults=True, rename="camel"):
    """The generation options of a prompt body, under their camel-case names."""

    temperature: Temperature | None = None
    max_tokens: PositiveInt | None = None
    top_p: Annotated[float, Meta(ge=0, le=1)] | None = None
    stop: str | Annotated[list[str], Meta(max_length=MAX_STOP_SEQUENCES)] | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    seed: int | None = None
    stream: bool | None = None
    system_prompt: str | None = None


class PromptRequest(Struct, forbid_unknown_fields=True, omit_defaults=True):
    """A prompt for `userId`, answered by the public model `model`, optionally on one provider
    (`provider`, a provider id of that model's targets)."""

    prompt: Name
    user_id: UserId = field(name="userId")
    model: Name
    provider: Name | None = None
    options: PromptOptions | None = None


OPTION_NAMES: tuple[str, ...] = PromptOptions.__struct_encode_fields__

PARAM_NAMES: Mapping[str, str] = MappingProxyType(
    {
        name: f"options.{option}"
        for name, option in zip(PromptOptions.__struct_fields__, OPTION_NAMES, strict=True)
        if name != "system_prompt"
    }
)
"""The canonical parameters a prompt body sets, by the option that sets them, so that a
refused or dropped parameter is named as the client sent it (`options.maxTokens`)."""

_UNKNOWN_OPTION = re.compile(r"unknown field `([^`]*)` - at `\$\.options`")
_MISSING_MODEL = "Object missing required field `model`"
_decoder = msgspec.json.Decoder(PromptRequest)


_ABSENT = msgspec.Raw()  # a field's raw JSON is never empty


class _Shape(Struct):
    """The fields that tell a prompt body from a chat request; any others are skipped."""

    messages: msgspec.Raw = _ABSENT
    prompt: msgspec.Raw = _ABSENT
    user_id: msgspec.Raw = field(name="userId", default=_ABSENT)


_shape_decoder = msgspec.json.Decoder(_Shape)


def is_prompt_body(body: bytes) -> bool:
    """Whether `body` is a prompt body (it holds `prompt` or `userId`) rather than a chat
    request (which holds `messages`).

    Raises:
        InvalidRequestError: The body holds both `messages` and a prompt body's field.
        msgspec.DecodeError: The body is not a JSON object.
    """
    shape = _shape_decoder.decode(body)
    is_prompt = bool(shape.prompt) or bool(shape.user_id)
    if is_prompt and shape.messages:
        field_name = "prompt" if shape.prompt else "userId"
        raise InvalidRequestError(
            f"The body holds both messages and {field_name}: send a chat request (model, "
            "messages, ...) or a prompt body (prompt, userId, model, ...), not both.",
            param=field_name,
        )
    return is_prompt


def decode_prompt_request(body: bytes) -> PromptRequest:
    """The prompt body in `body`.

    Raises:
        InvalidRequestError: No `model`, or an option this body does not take, named (with
            the accepted names, and the camel-case spelling of a snake-case one).
        msgspec.DecodeError: Any other fault, for the route to report as for any body.
    """
    try:
        return _decoder.decode(body)
    except msgspec.ValidationError as exc:
        message = str(exc)
        if message == _MISSING_MODEL:
            raise InvalidRequestError(
                "model is required: name one of the public models this key may use "
                "(GET /v1/models); a prompt body has no default model.",
                param="model",
            ) from exc
        unknown = _UNKNOWN_OPTION.search(message)
        if unknown is None:
            raise
        raise _unknown_option(unknown.group(1)) from exc


def _unknown_option(name: str) -> InvalidRequestError:
    camel = PARAM_NAMES.get(name)
    hint = f" (did you mean {camel.removeprefix('options.')!r}?)" if camel else ""
    return InvalidRequestError(
        f"options.{name} is not an option of a prompt body{hint}; the options are: "
        f"{', '.join(OPTION_NAMES)}.",
        param=f"options.{name}",
    )


def to_chat_request(request: PromptRequest) -> ChatRequest:
    """The canonical request for a prompt body (see the module docstring)."""
    options = request.options or PromptOptions()
    messages: list[Message] = []
    if options.system_prompt is not None:
        messages.append(SystemMessage(content=options.system_prompt))
    messages.append(UserMessage(content=request.prompt))
    return ChatRequest(
        model=request.model,
        messages=messages,
        stream=options.stream,
        temperature=options.temperature,
        top_p=options.top_p,
        stop=options.stop,
        max_tokens=options.max_tokens,
        presence_penalty=options.presence_penalty,
        frequency_penalty=options.frequency_penalty,
        seed=options.seed,
    )
