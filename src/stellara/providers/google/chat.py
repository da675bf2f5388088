"""Pure translation between canonical chat types and Gemini's `generateContent` bodies.

Request choices where OpenAI's format has no exact Gemini twin:

* System and developer messages, wherever they appear, become one `systemInstruction`; a
  conversation of system text only is sent as one user turn, as Gemini refuses empty `contents`.
* Consecutive turns of one role are merged (tool results join the user turn that follows them),
  since Gemini wants user and model turns to alternate. Empty text is dropped: Gemini refuses it.
* An image `data:` URL becomes `inlineData`; an http(s) URL becomes `fileData` and Gemini fetches
  it. Its MIME type is guessed from the path's extension (png, jpeg, webp, gif, heic, heif), else
  `image/jpeg`, because Gemini needs one and the gateway must not fetch the image to sniff it.
* A tool result becomes `functionResponse{name, response: {"result": value}}`: the name comes from
  the earlier tool call with that id, `value` is the content parsed as JSON when it is JSON, else
  the text. This is the wrapping Google's own SDK uses for function results.
* Tool and response JSON schemas keep only the keys Gemini's `Schema` knows (`_SCHEMA_KEYS`);
  everything else (`additionalProperties`, `$schema`, `strict`, `$id`, `examples`, `not`, …) is
  dropped. Local `$ref`s to `$defs`/`definitions` are inlined, `const` becomes a one-value `enum`,
  `oneOf` becomes `anyOf`, and a `null` type becomes `nullable: true`.
* Parameters Gemini lacks (`logit_bias`, `logprobs`, `user`, `parallel_tool_calls`,
  `reasoning_effort`, …) are not sent.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any, Literal
from urllib.parse import urlsplit

import msgspec

from stellara import _json
from stellara.errors import ContentFilterError, InvalidRequestError, UpstreamProtocolError
from stellara.schema.chat import (
    AssistantMessage,
    AudioPart,
    ChatCompletion,
    ChatRequest,
    Choice,
    CompletionTokensDetails,
    FilePart,
    FunctionMessage,
    ImagePart,
    Message,
    NamedToolChoice,
    PromptTokensDetails,
    ResponseFormat,
    ResponseMessage,
    TextPart,
    Tool,
    ToolCall,
    ToolChoice,
    ToolMessage,
    Usage,
    UserContentPart,
    UserMessage,
)
from stellara.schema.chat import FunctionCall as CanonicalFunctionCall
from stellara.wire.google import (
    Blob,
    Candidate,
    Content,
    FileData,
    FunctionCall,
    FunctionCallingConfig,
    FunctionDeclaration,
    FunctionResponse,
    GeminiTool,
    GenerateContentRequest,
    GenerateContentResponse,
    GenerationConfig,
    Part,
    ToolConfig,
    UsageMetadata,
    request_encoder,
    response_decoder,
)

Role = Literal["system", "user", "model"]

_CONTENT_FILTER_REASONS = frozenset(
    {
        "SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII",
        "IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION",
    }
)  # fmt: skip
_TOOL_MODES = {"auto": "AUTO", "required": "ANY", "none": "NONE"}
_IMAGE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".gif": "image/gif",
    ".heic": "image/heic",
    ".heif": "image/heif",
}
_DEFAULT_IMAGE_TYPE = "image/jpeg"
_JSON_TYPE = "application/json"
_EMPTY_CONFIG = GenerationConfig()
# The fields of Gemini's `Schema` (an OpenAPI 3.0 subset) that carry over from JSON Schema;
# `properties`, `items` and `anyOf` are converted recursively instead of copied.
_SCHEMA_KEYS = frozenset(
    {
        "type", "format", "title", "description", "nullable", "enum", "required",
        "minItems", "maxItems", "minProperties", "maxProperties", "minLength", "maxLength",
        "pattern", "example", "default", "propertyOrdering", "minimum", "maximum",
    }
)  # fmt: skip
_MAX_SCHEMA_DEPTH = 32  # stops self-referencing `$ref`s

# ---------------------------------------------------------------- request


def build_generate_body(request: ChatRequest) -> bytes:
    """The JSON body for `models/{model}:generateContent` (the model is in the URL)."""
    return request_encoder.encode(build_generate_request(request))


def build_generate_request(request: ChatRequest) -> GenerateContentRequest:
    """Translate a canonical request; raises `InvalidRequestError` for what Gemini cannot take."""
    system, contents = _conversation(request.messages)
    tools = _tools(request.tools)
    config = _generation_config(request)
    return GenerateContentRequest(
        contents=contents,
        system_instruction=system,
        tools=tools,
        tool_config=_tool_config(request.tool_choice) if tools else None,
        generation_config=None if config == _EMPTY_CONFIG else config,
    )


def _conversation(messages: Sequence[Message]) -> tuple[Content | None, list[Content]]:
    system_parts: list[Part] = []
    contents: list[Content] = []
    call_names: dict[str, str] = {}  # tool call id → function name, for the results
    for at, message in enumerate(messages):
        role, parts = _turn(message, at, call_names)
        if role == "system":
            system_parts.extend(parts)
        elif not parts:
            continue
        elif contents and contents[-1].role == role:
            contents[-1].parts.extend(parts)
        else:
            contents.append(Content(parts=parts, role=role))
    if not contents:
        if not system_parts:
            raise InvalidRequestError("the messages hold no content", param="messages")
        return None, [Content(parts=system_parts, role="user")]
    return (Content(parts=system_parts) if system_parts else None), contents


def _turn(message: Message, at: int, call_names: dict[str, str]) -> tuple[Role, list[Part]]:
    if isinstance(message, UserMessage):
        return "user", _user_parts(message.content, at)
    if isinstance(message, AssistantMessage):
        return "model", _assistant_parts(message, at, call_names)
    if isinstance(message, ToolMessage):
        name = call_names.get(message.tool_call_id)
        if name is None:
            raise InvalidRequestError(
                f"tool message {at} answers tool call {message.tool_call_id!r}, "
                "which no earlier assistant message made",
                param=f"messages[{at}].tool_call_id",
            )
        return "user", [_function_response(name, _text_of(message.content))]
    if isinstance(message, FunctionMessage):
        return "user", [_function_response(message.name, message.content or "")]
    return "system", _text_parts([_text_of(message.content)])


def _text_of(content: str | Sequence[TextPart]) -> str:
    return content if isinstance(content, str) else "".join(part.text for part in content)


def _text_parts(texts: Sequence[str]) -> list[Part]:
    return [Part(text=text) for text in texts if text]


def _user_parts(content: str | Sequence[UserContentPart], at: int) -> list[Part]:
    if isinstance(content, str):
        return _text_parts([content])
    parts: list[Part] = []
    for k, part in enumerate(content):
        param = f"messages[{at}].content[{k}]"
        if isinstance(part, TextPart):
            parts.extend(_text_parts([part.text]))
        elif isinstance(part, ImagePart):
            parts.append(_image_part(part.image_url.url, param))
        elif isinstance(part, AudioPart):
            audio = part.input_audio
            parts.append(Part(inline_data=Blob(mime_type=f"audio/{audio.format}", data=audio.data)))
        elif isinstance(part, FilePart) and part.file.file_data is not None:
            parts.append(Part(inline_data=_data_url_blob(part.file.file_data, param)))
        else:
            raise InvalidRequestError(
                "file_id references cannot be sent to a Google provider; send file_data",
                param=param,
            )
    return parts


def _image_part(url: str, param: str) -> Part:
    if url.startswith("data:"):
        return Part(inline_data=_data_url_blob(url, param))
    parsed = urlsplit(url)
    if parsed.scheme not in ("http", "https"):
        raise InvalidRequestError("an image URL must be an http(s) or data: URL", param=param)
    path = parsed.path.lower()
    extension = path[path.rfind(".") :] if "." in path else ""
    mime_type = _IMAGE_TYPES.get(extension, _DEFAULT_IMAGE_TYPE)
    return Part(file_data=FileData(file_uri=url, mime_type=mime_type))


def _data_url_blob(url: str, param: str) -> Blob:
    header, comma, data = url.removeprefix("data:").partition(",")
    mime_type, _, encoding = header.partition(";")
    if not comma or not mime_type or not encoding.endswith("base64"):
        raise InvalidRequestError(
            "a data: URL must look like data:<mime type>;base64,<data>", param=param
        )
    return Blob(mime_type=mime_type, data=data)


def _assistant_parts(message: AssistantMessage, at: int, call_names: dict[str, str]) -> list[Part]:
    content = message.content
    if content is None:
        parts: list[Part] = []
    elif isinstance(content, str):
        parts = _text_parts([content])
    else:
        texts = [p.text if isinstance(p, TextPart) else p.refusal for p in content]
        parts = _text_parts(texts)
    calls: list[tuple[str, CanonicalFunctionCall]] = [
        (f"messages[{at}].tool_calls[{k}].function.arguments", call.function)
        for k, call in enumerate(message.tool_calls or [])
    ]
    for call in message.tool_calls or []:
        call_names[call.id] = call.function.name
    if message.function_call is not None:
        calls.append((f"messages[{at}].function_call.arguments", message.function_call))
    for param, function in calls:
        args = _arguments(function.arguments, param)
        parts.append(Part(function_call=FunctionCall(name=function.name, args=args)))
    return parts


def _arguments(raw: str, param: str) -> dict[str, Any]:
    if not raw.strip():
        return {}  # some clients send "" for a function without parameters
    try:
        value = _json.loads(raw)
    except ValueError as exc:  # orjson.JSONDecodeError is a ValueError
        raise InvalidRequestError("tool call arguments are not valid JSON", param=param) from exc
    if not isinstance(value, dict):
        raise InvalidRequestError("tool call arguments must be a JSON object", param=param)
    return value


def _function_response(name: str, content: str) -> Part:
    try:
        value: Any = _json.loads(content)
    except ValueError:
        value = content
    return Part(function_response=FunctionResponse(name=name, response={"result": value}))


def _tools(tools: Sequence[Tool] | None) -> list[GeminiTool] | None:
    if not tools:
        return None
    declarations = [
        FunctionDeclaration(
            name=tool.function.name,
            description=tool.function.description,
            parameters=_parameters(tool.function.parameters),
        )
        for tool in tools
    ]
    return [GeminiTool(function_declarations=declarations)]


def _parameters(schema: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not schema:
        return None
    converted = gemini_schema(schema)
    # Gemini refuses an OBJECT without properties: a function without parameters declares none.
    if converted.get("type") == "object" and not converted.get("properties"):
        return None
    return converted


def _tool_config(choice: ToolChoice | None) -> ToolConfig | None:
    if choice is None:
        return None
    if isinstance(choice, NamedToolChoice):
        config = FunctionCallingConfig(mode="ANY", allowed_function_names=[choice.function.name])
    else:
        config = FunctionCallingConfig(mode=_TOOL_MODES[choice])
    return ToolConfig(function_calling_config=config)


def _generation_config(request: ChatRequest) -> GenerationConfig:
    stop = [request.stop] if isinstance(request.stop, str) else request.stop
    mime_type, schema = _response_format(request.response_format)
    return GenerationConfig(
        temperature=request.temperature,
        top_p=request.top_p,
        max_output_tokens=request.max_completion_tokens or request.max_tokens,
        stop_sequences=stop or None,
        candidate_count=request.n,
        response_mime_type=mime_type,
        response_schema=schema,
        seed=request.seed,
        presence_penalty=request.presence_penalty,
        frequency_penalty=request.frequency_penalty,
    )


def _response_format(
    response_format: ResponseFormat | None,
) -> tuple[str | None, dict[str, Any] | None]:
    if response_format is None or response_format.type == "text":
        return None, None
    json_schema = response_format.json_schema
    if response_format.type == "json_schema" and json_schema and json_schema.schema:
        return _JSON_TYPE, gemini_schema(json_schema.schema)
    return _JSON_TYPE, None


def gemini_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON schema reduced to the subset Gemini's `Schema` accepts (see the module doc)."""
    defs: dict[str, Any] = {}
    for key in ("definitions", "$defs"):
        found = schema.get(key)
        if isinstance(found, Mapping):
            defs.update(found)
    return _convert_schema(schema, defs, 0)


def _convert_schema(
    schema: Mapping[str, Any], defs: Mapping[str, Any], depth: int
) -> dict[str, Any]:
    if depth > _MAX_SCHEMA_DEPTH:
        return {}
    schema = _resolve_ref(schema, defs)
    out: dict[str, Any] = {key: value for key, value in schema.items() if key in _SCHEMA_KEYS}
    if "const" in schema and "enum" not in out:
        out["enum"] = [schema["const"]]
    kind = schema.get("type")
    if isinstance(kind, list):
        concrete = [k for k in kind if k != "null"]
        out.pop("type")
        if concrete:
            out["type"] = concrete[0]
        if "null" in kind:
            out["nullable"] = True
    properties = schema.get("properties")
    if isinstance(properties, Mapping):
        out["properties"] = {
            name: _convert_schema(sub, defs, depth + 1)
            for name, sub in properties.items()
            if isinstance(sub, Mapping)
        }
    items = schema.get("items")
    if isinstance(items, Mapping):
        out["items"] = _convert_schema(items, defs, depth + 1)
    options = schema.get("anyOf", schema.get("oneOf"))
    if isinstance(options, list):
        out.update(_any_of(options, defs, depth))
    return out


def _resolve_ref(schema: Mapping[str, Any], defs: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = schema.get("$ref")
    if not isinstance(ref, str):
        return schema
    target = defs.get(ref.rpartition("/")[2])
    siblings = {key: value for key, value in schema.items() if key != "$ref"}
    return {**target, **siblings} if isinstance(target, Mapping) else siblings


def _any_of(options: list[Any], defs: Mapping[str, Any], depth: int) -> dict[str, Any]:
    """`anyOf`, with a `null` option turned into `nullable` (how pydantic writes `X | None`)."""
    is_nullable = any(isinstance(o, Mapping) and o.get("type") == "null" for o in options)
    kept = [
        _convert_schema(o, defs, depth + 1)
        for o in options
        if isinstance(o, Mapping) and o.get("type") != "null"
    ]
    out: dict[str, Any] = {"nullable": True} if is_nullable else {}
    if len(kept) == 1:
        out.update(kept[0])
    elif kept:
        out["anyOf"] = kept
    return out


# ---------------------------------------------------------------- response


def parse_generate_response(body: bytes, provider: str) -> GenerateContentResponse:
    """Decode a `GenerateContentResponse`; anything else is the provider breaking the protocol."""
    try:
        return response_decoder.decode(body)
    except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
        raise UpstreamProtocolError(
            f"provider {provider!r} sent an invalid GenerateContentResponse: {exc}",
            provider=provider,
        ) from exc


def to_completion(
    response: GenerateContentResponse,
    *,
    provider: str,
    completion_id: str,
    created: int,
    model: str,
) -> ChatCompletion:
    """The canonical completion for a whole Gemini answer.

    Args:
        response: The decoded answer.
        provider: The provider id, for error messages.
        completion_id: The `chatcmpl-…` id; tool call ids are derived from it.
        created: Unix time of the answer.
        model: The model asked for; Gemini's `modelVersion` wins when it sent one.

    Raises:
        ContentFilterError: Gemini blocked the prompt and produced no candidate.
        UpstreamProtocolError: The answer has no candidate and no reason for it.
    """
    raise_if_blocked(response, provider)
    if not response.candidates:
        raise UpstreamProtocolError(
            f"provider {provider!r} answered without any candidate", provider=provider
        )
    choices = [
        _choice(candidate, position, completion_id)
        for position, candidate in enumerate(response.candidates)
    ]
    usage = response.usage_metadata
    return ChatCompletion(
        id=completion_id,
        object="chat.completion",
        created=created,
        model=response.model_version or model,
        choices=choices,
        usage=to_usage(usage) if usage is not None else None,
    )


def _choice(candidate: Candidate, position: int, completion_id: str) -> Choice:
    index = candidate_index(candidate, position)
    parts = candidate.content.parts if candidate.content is not None else []
    texts, calls = split_parts(parts, completion_id, index)
    message = ResponseMessage(
        role="assistant", content="".join(texts) if texts else None, tool_calls=calls or None
    )
    reason = finish_reason(candidate.finish_reason or "STOP", has_tool_calls=bool(calls))
    return Choice(index=index, message=message, finish_reason=reason)


def candidate_index(candidate: Candidate, position: int) -> int:
    """Gemini leaves `index` out for the first candidate; its position in the list stands in."""
    return candidate.index if candidate.index is not None else position


def split_parts(
    parts: Sequence[Part], completion_id: str, choice_index: int, first_call: int = 0
) -> tuple[list[str], list[ToolCall]]:
    """The answer text pieces and the function calls among `parts`.

    Thought summaries (`thought: true`) and parts the gateway does not interpret are skipped.
    `first_call` numbers the calls, so a stream keeps call ids unique across events.
    """
    texts: list[str] = []
    calls: list[ToolCall] = []
    for part in parts:
        if part.thought:
            continue
        if part.text is not None:
            texts.append(part.text)
        elif part.function_call is not None:
            call = part.function_call
            call_id = tool_call_id(completion_id, choice_index, first_call + len(calls))
            arguments = _json.dumps(call.args or {}).decode()
            function = CanonicalFunctionCall(name=call.name, arguments=arguments)
            calls.append(ToolCall(id=call_id, type="function", function=function))
    return texts, calls


def tool_call_id(completion_id: str, choice_index: int, call_index: int) -> str:
    """A `call_…` id for a Gemini function call, which has none of its own.

    Derived from the completion id, so the same answer always gets the same ids.
    """
    seed = f"{completion_id}/{choice_index}/{call_index}".encode()
    return "call_" + hashlib.blake2b(seed, digest_size=12).hexdigest()


def finish_reason(reason: str, *, has_tool_calls: bool) -> str:
    """The canonical finish reason for Gemini's `finishReason`.

    Reasons with no OpenAI twin (`OTHER`, `LANGUAGE`, `MALFORMED_FUNCTION_CALL`, …) are `stop`.
    """
    if reason == "MAX_TOKENS":
        return "length"
    if reason in _CONTENT_FILTER_REASONS:
        return "content_filter"
    return "tool_calls" if has_tool_calls else "stop"


def raise_if_blocked(response: GenerateContentResponse, provider: str) -> None:
    """Raise `ContentFilterError` when Gemini refused the prompt itself."""
    feedback = response.prompt_feedback
    if feedback is not None and feedback.block_reason and not response.candidates:
        raise ContentFilterError(
            f"provider {provider!r} blocked the prompt ({feedback.block_reason})",
            provider=provider,
            upstream_status=200,
        )


def to_usage(meta: UsageMetadata) -> Usage:
    """Canonical usage: thinking tokens are billed as output, so they count as completion."""
    prompt = meta.prompt_token_count + meta.tool_use_prompt_token_count
    completion = meta.candidates_token_count + meta.thoughts_token_count
    cached = meta.cached_content_token_count
    thoughts = meta.thoughts_token_count
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=cached) if cached else None,
        completion_tokens_details=(
            CompletionTokensDetails(reasoning_tokens=thoughts) if thoughts else None
        ),
    )
