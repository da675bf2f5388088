"""A Gemini `generateContent` request → the canonical chat request."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from stellara import _json
from stellara.errors import InvalidRequestError
from stellara.inbound.gemini._schema import json_schema
from stellara.schema.chat import (
    AssistantMessage,
    AudioPart,
    ChatRequest,
    FilePart,
    FileRef,
    FunctionCall,
    FunctionDefinition,
    ImagePart,
    ImageURL,
    InputAudio,
    JSONSchemaFormat,
    Message,
    NamedToolChoice,
    ResponseFormat,
    StreamOptions,
    SystemMessage,
    TextPart,
    Tool,
    ToolCall,
    ToolChoice,
    ToolChoiceFunction,
    ToolMessage,
    UserContentPart,
    UserMessage,
)
from stellara.wire.google_inbound import (
    BlobParam,
    ContentParam,
    FunctionCallingConfigParam,
    GenerateContentParams,
    GenerationConfigParam,
    PartParam,
    ToolConfigParam,
    ToolParam,
)

_JSON = "application/json"
_TEXT = "text/plain"
_AUDIO_FORMATS = {"audio/wav": "wav", "audio/x-wav": "wav", "audio/mp3": "mp3", "audio/mpeg": "mp3"}
_PDF = "application/pdf"
RESPONSE_SCHEMA_NAME = "response"  # the json_schema `name` the canonical form requires
PARAM_NAMES: Mapping[str, str] = MappingProxyType(
    {
        "temperature": "generationConfig.temperature",
        "top_p": "generationConfig.topP",
        "n": "generationConfig.candidateCount",
        "stop": "generationConfig.stopSequences",
        "max_tokens": "generationConfig.maxOutputTokens",
        "presence_penalty": "generationConfig.presencePenalty",
        "frequency_penalty": "generationConfig.frequencyPenalty",
        "seed": "generationConfig.seed",
        "tool_choice": "toolConfig",
        "response_format": "generationConfig.responseSchema",
        "dimensions": "outputDimensionality",
    }
)
"""This dialect's names of the canonical parameters it sets under another name, so a refused
or dropped parameter is named as the client sent it."""


def to_chat_request(
    request: GenerateContentParams, model: str, *, is_streaming: bool = False
) -> ChatRequest:
    """The canonical request for a Gemini request to `model` (the URL's, without `models/`).

    Raises:
        InvalidRequestError: What the canonical form cannot carry, named by its path.
    """
    if not request.contents:
        raise InvalidRequestError("contents: at least one content is required.", param="contents")
    messages: list[Message] = []
    if request.system_instruction is not None:
        text = _system_text(request.system_instruction)
        if text:
            messages.append(SystemMessage(content=text))
    calls = _CallIds()
    for at, content in enumerate(request.contents):
        messages.extend(_messages(content, f"contents[{at}]", calls))
    tools, choice = _tools(request.tools, request.tool_config)
    config = request.generation_config or GenerationConfigParam()
    return ChatRequest(
        model=model,
        messages=messages,
        stream=True if is_streaming else None,
        stream_options=StreamOptions(include_usage=True) if is_streaming else None,
        temperature=config.temperature,
        top_p=config.top_p,
        n=config.candidate_count,
        stop=config.stop_sequences or None,
        max_tokens=config.max_output_tokens,
        presence_penalty=config.presence_penalty,
        frequency_penalty=config.frequency_penalty,
        seed=config.seed,
        tools=tools,
        tool_choice=choice,
        response_format=_response_format(config),
    )


def _system_text(content: ContentParam) -> str:
    texts = []
    for at, part in enumerate(content.parts):
        if part.text is None:
            raise _unsupported(f"systemInstruction.parts[{at}]", "only text parts")
        texts.append(part.text)
    return "\n".join(texts)


class _CallIds:
    """Function calls of the model turns, so that each `functionResponse` answers a call id.

    A call without an `id` gets one from its position; a response without one answers the
    earliest unanswered call of its name, which is how Gemini pairs them.
    """

    def __init__(self) -> None:
        self._open: list[tuple[str, str]] = []  # (call id, function name), unanswered

    def call(self, name: str, call_id: str | None, path: str) -> str:
        made = call_id or f"call_{path.replace('[', '_').replace(']', '').replace('.', '_')}"
        self._open.append((made, name))
        return made

    def answer(self, name: str, call_id: str | None, path: str) -> str:
        for position, (open_id, open_name) in enumerate(self._open):
            if (call_id is not None and open_id == call_id) or (
                call_id is None and open_name == name
            ):
                del self._open[position]
                return open_id
        raise InvalidRequestError(
            f"{path}: this functionResponse ({name!r}) answers no earlier functionCall.",
            param=path,
        )


def _messages(content: ContentParam, path: str, calls: _CallIds) -> list[Message]:
    if not content.parts:
        raise InvalidRequestError(f"{path}.parts: must not be empty.", param=f"{path}.parts")
    role = content.role or "user"
    if role == "model":
        return [_assistant_message(content.parts, path, calls)]
    if role != "user":
        raise InvalidRequestError(
            f"{path}.role: must be 'user' or 'model', not {role!r}.", param=f"{path}.role"
        )
    results: list[Message] = []
    parts: list[UserContentPart] = []
    for at, part in enumerate(content.parts):
        where = f"{path}.parts[{at}]"
        response = part.function_response
        if response is not None:
            call_id = calls.answer(response.name, response.id, where)
            results.append(
                ToolMessage(content=_result_text(response.response), tool_call_id=call_id)
            )
        else:
            parts.append(_user_part(part, where))
    if parts:
        results.append(UserMessage(content=_collapsed(parts)))
    return results


def _collapsed(parts: list[UserContentPart]) -> str | list[UserContentPart]:
    """One text part stays a plain string, as most clients send it."""
    if len(parts) == 1 and isinstance(parts[0], TextPart):
        return parts[0].text
    return parts


def _result_text(response: Mapping[str, Any]) -> str:
    """A tool message's text: the `result` string Google's SDKs wrap a value in, else the
    response object as JSON."""
    result = response.get("result")
    if len(response) == 1 and isinstance(result, str):
        return result
    return _json.dumps(response).decode()


def _user_part(part: PartParam, path: str) -> UserContentPart:
    if part.text is not None:
        return TextPart(part.text)
    if part.inline_data is not None:
        return _inline_part(part.inline_data, f"{path}.inlineData")
    if part.file_data is not None:
        file = part.file_data
        url = file.file_uri
        if (file.mime_type or "image/").startswith("image/") and url.startswith(
            ("http://", "https://")
        ):
            return ImagePart(ImageURL(url))
        raise _unsupported(f"{path}.fileData", "only http(s) image URLs")
    if part.function_call is not None:
        raise InvalidRequestError(
            f"{path}: a functionCall part belongs in a 'model' turn.", param=path
        )
    raise InvalidRequestError(f"{path}: the part holds none of its fields.", param=path)


def _inline_part(blob: BlobParam, path: str) -> UserContentPart:
    mime_type = blob.mime_type.lower()
    if mime_type.startswith("image/"):
        return ImagePart(ImageURL(f"data:{mime_type};base64,{blob.data}"))
    audio_format = _AUDIO_FORMATS.get(mime_type)
    if audio_format is not None:
        return AudioPart(InputAudio(data=blob.data, format=audio_format))
    if mime_type == _PDF:
        return FilePart(FileRef(file_data=f"data:{_PDF};base64,{blob.data}"))
    raise _unsupported(f"{path}.mimeType", "images, WAV or MP3 audio, and PDF documents")


def _assistant_message(parts: Sequence[PartParam], path: str, calls: _CallIds) -> Message:
    texts: list[str] = []
    tool_calls: list[ToolCall] = []
    for at, part in enumerate(parts):
        where = f"{path}.parts[{at}]"
        if part.text is not None:
            texts.append(part.text)
        elif part.function_call is not None:
            call = part.function_call
            call_id = calls.call(call.name, call.id, where)
            arguments = _json.dumps(call.args or {}).decode()
            tool_calls.append(ToolCall(call_id, "function", FunctionCall(call.name, arguments)))
        else:
            raise _unsupported(where, "text and functionCall parts in a 'model' turn")
    return AssistantMessage(
        content="".join(texts) if texts else None, tool_calls=tool_calls or None
    )


def _tools(
    tools: Sequence[ToolParam] | None, config: ToolConfigParam | None
) -> tuple[list[Tool] | None, ToolChoice | None]:
    declared = [
        (f"tools[{t}].functionDeclarations[{f}]", declaration)
        for t, tool in enumerate(tools or [])
        for f, declaration in enumerate(tool.function_declarations)
    ]
    canonical: list[Tool] = []
    for path, declaration in declared:
        if declaration.parameters is not None and declaration.parameters_json_schema is not None:
            raise InvalidRequestError(
                f"{path}: set parameters or parametersJsonSchema, not both.", param=path
            )
        schema = declaration.parameters_json_schema
        if declaration.parameters is not None:
            schema = json_schema(declaration.parameters)
        definition = FunctionDefinition(declaration.name, declaration.description, schema)
        canonical.append(Tool("function", definition))
    calling = config.function_calling_config if config is not None else None
    if calling is None:
        return canonical or None, None
    return _tool_choice(canonical, calling)


def _tool_choice(
    tools: list[Tool], calling: FunctionCallingConfigParam
) -> tuple[list[Tool] | None, ToolChoice | None]:
    """`ANY` with allowed names keeps only those tools: the model must call one of them."""
    path = "toolConfig.functionCallingConfig"
    allowed = calling.allowed_function_names
    mode = calling.mode or "AUTO"
    if allowed and mode != "ANY":
        raise InvalidRequestError(
            f"{path}.allowedFunctionNames: only allowed with mode ANY.",
            param=f"{path}.allowedFunctionNames",
        )
    if not tools:
        return None, None  # Gemini ignores a function-calling config without functions
    if mode == "NONE":
        return tools, "none"
    if mode != "ANY":
        return tools, "auto"
    if not allowed:
        return tools, "required"
    kept = [tool for tool in tools if tool.function.name in allowed]
    missing = sorted(set(allowed) - {tool.function.name for tool in kept})
    if missing:
        raise InvalidRequestError(
            f"{path}.allowedFunctionNames: {', '.join(missing)} not declared.",
            param=f"{path}.allowedFunctionNames",
        )
    if len(kept) == 1:
        return kept, NamedToolChoice("function", ToolChoiceFunction(kept[0].function.name))
    return kept, "required"


def _response_format(config: GenerationConfigParam) -> ResponseFormat | None:
    mime_type = config.response_mime_type
    schema = config.response_json_schema
    if config.response_schema is not None:
        if schema is not None:
            raise InvalidRequestError(
                "generationConfig: set responseSchema or responseJsonSchema, not both.",
                param="generationConfig.responseSchema",
            )
        schema = json_schema(config.response_schema)
    if mime_type is None or mime_type == _TEXT:
        if schema is not None:
            raise InvalidRequestError(
                "generationConfig.responseMimeType: a response schema needs 'application/json'.",
                param="generationConfig.responseMimeType",
            )
        return None
    if mime_type != _JSON:
        raise _unsupported("generationConfig.responseMimeType", "text/plain and application/json")
    if schema is None:
        return ResponseFormat("json_object")
    return ResponseFormat("json_schema", JSONSchemaFormat(RESPONSE_SCHEMA_NAME, schema=schema))


def _unsupported(path: str, what: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"{path}: not supported by the gateway, which carries {what} to every provider.",
        param=path,
    )
