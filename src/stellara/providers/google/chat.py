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
* Tool and response JSON schemas go as JSON Schema (`parametersJsonSchema`,
  `responseJsonSchema`) to Gemini 2.5 and later, else converted to Gemini's `Schema`, refusing
  what it cannot express (see `schema`). Gemini always holds the answer to the schema, so
  `strict` needs nothing sent.
* `reasoning_effort` becomes `thinkingConfig` (see `thinking`). A function call's thought
  signature travels to the client inside its tool call id and comes back from it (see
  `signatures`); a signature Gemini puts on a text part has no place in an OpenAI answer.
* `logprobs` / `top_logprobs` become `responseLogprobs` / `logprobs`, and `logprobsResult` comes
  back as `choices[].logprobs` (see `logprobs`). `top_logprobs` without `logprobs: true` is
  refused, as OpenAI does.
* Parameters Gemini lacks (`logit_bias`, `user`, `parallel_tool_calls`, …) are not sent.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, Literal
from urllib.parse import urlsplit

import msgspec

from stellara import _json
from stellara.errors import ContentFilterError, InvalidRequestError, UpstreamProtocolError
from stellara.providers.google.logprobs import openai_logprobs
from stellara.providers.google.schema import gemini_schema
from stellara.providers.google.signatures import signature_of, with_signature
from stellara.providers.google.thinking import thinking_config
from stellara.providers.google.versions import JSON_SCHEMA_SINCE, is_at_least
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
# ---------------------------------------------------------------- request


def build_generate_body(request: ChatRequest, model: str) -> bytes:
    """The JSON body for `models/{model}:generateContent` (the model is in the URL)."""
    return request_encoder.encode(build_generate_request(request, model))


def build_generate_request(request: ChatRequest, model: str) -> GenerateContentRequest:
    """Translate a canonical request for the upstream `model`, whose generation decides how
    schemas and `reasoning_effort` are sent; raises `InvalidRequestError` for what Gemini
    cannot take."""
    system, contents = _conversation(request.messages)
    takes_json_schema = is_at_least(model, JSON_SCHEMA_SINCE)
    tools = _tools(request.tools, takes_json_schema=takes_json_schema)
    config = _generation_config(request, model, takes_json_schema=takes_json_schema)
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
    calls: list[tuple[str, CanonicalFunctionCall, str | None]] = [
        (f"messages[{at}].tool_calls[{k}].function.arguments", call.function, call.id)
        for k, call in enumerate(message.tool_calls or [])
    ]
    for call in message.tool_calls or []:
        call_names[call.id] = call.function.name
    if message.function_call is not None:
        calls.append((f"messages[{at}].function_call.arguments", message.function_call, None))
    for param, function, call_id in calls:
        args = _arguments(function.arguments, param)
        parts.append(
            Part(
                function_call=FunctionCall(name=function.name, args=args),
                thought_signature=signature_of(call_id) if call_id else None,
            )
        )
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


def _tools(tools: Sequence[Tool] | None, *, takes_json_schema: bool) -> list[GeminiTool] | None:
    if not tools:
        return None
    declarations = []
    for k, tool in enumerate(tools):
        function = tool.function
        declaration = FunctionDeclaration(name=function.name, description=function.description)
        schema = function.parameters
        # A function without parameters declares none (Gemini refuses an OBJECT without any).
        if schema and not (schema.get("type") == "object" and not schema.get("properties")):
            if takes_json_schema:
                declaration.parameters_json_schema = schema
            else:
                declaration.parameters = gemini_schema(schema, f"tools[{k}].function.parameters")
        declarations.append(declaration)
    return [GeminiTool(function_declarations=declarations)]


def _tool_config(choice: ToolChoice | None) -> ToolConfig | None:
    if choice is None:
        return None
    if isinstance(choice, NamedToolChoice):
        config = FunctionCallingConfig(mode="ANY", allowed_function_names=[choice.function.name])
    else:
        config = FunctionCallingConfig(mode=_TOOL_MODES[choice])
    return ToolConfig(function_calling_config=config)


def _generation_config(
    request: ChatRequest, model: str, *, takes_json_schema: bool
) -> GenerationConfig:
    stop = [request.stop] if isinstance(request.stop, str) else request.stop
    if request.top_logprobs is not None and not request.logprobs:
        raise InvalidRequestError("top_logprobs needs logprobs: true", param="top_logprobs")
    config = GenerationConfig(
        temperature=request.temperature,
        top_p=request.top_p,
        top_k=request.top_k,
        max_output_tokens=request.max_completion_tokens or request.max_tokens,
        stop_sequences=stop or None,
        candidate_count=request.n,
        seed=request.seed,
        presence_penalty=request.presence_penalty,
        frequency_penalty=request.frequency_penalty,
        response_logprobs=True if request.logprobs else None,
        logprobs=request.top_logprobs or None,
        thinking_config=thinking_config(request.reasoning_effort, model),
    )
    _set_response_format(config, request.response_format, takes_json_schema=takes_json_schema)
    return config


def _set_response_format(
    config: GenerationConfig, response_format: ResponseFormat | None, *, takes_json_schema: bool
) -> None:
    if response_format is None or response_format.type == "text":
        return
    config.response_mime_type = _JSON_TYPE
    json_schema = response_format.json_schema
    if response_format.type != "json_schema" or not json_schema or not json_schema.schema:
        return
    if takes_json_schema:
        config.response_json_schema = json_schema.schema
    else:
        config.response_schema = gemini_schema(
            json_schema.schema, "response_format.json_schema.schema"
        )


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
    choice = Choice(index=index, message=message, finish_reason=reason)
    if candidate.logprobs_result is not None:
        choice.logprobs = openai_logprobs(candidate.logprobs_result)
    return choice


def candidate_index(candidate: Candidate, position: int) -> int:
    """Gemini leaves `index` out for the first candidate; its position in the list stands in."""
    return candidate.index if candidate.index is not None else position


def split_parts(
    parts: Sequence[Part], completion_id: str, choice_index: int, first_call: int = 0
) -> tuple[list[str], list[ToolCall]]:
    """The answer text pieces and the function calls among `parts`.

    Thought summaries (`thought: true`) and parts the gateway does not interpret are skipped.
    `first_call` numbers the calls, so a stream keeps call ids unique across events. A call's
    thought signature rides in its id (see `signatures`).
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
            call_id = with_signature(
                tool_call_id(completion_id, choice_index, first_call + len(calls)),
                part.thought_signature,
            )
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
