"""Input items ⇄ canonical messages: this turn's items, and the conversation to store."""

from __future__ import annotations

from stellara.errors import InvalidRequestError
from stellara.inbound.responses._items import message_parts
from stellara.inbound.responses._reasoning import thinking_block_of
from stellara.schema.chat import (
    AssistantMessage,
    DeveloperMessage,
    FilePart,
    FileRef,
    FunctionCall,
    ImagePart,
    ImageURL,
    Message,
    SystemMessage,
    TextPart,
    ThinkingBlocks,
    ToolCall,
    ToolMessage,
    UserContentPart,
    UserMessage,
)
from stellara.wire import responses as wire

REFUSED = "is not supported by this gateway"


def turn_messages(items: list[wire.InputItem], history: list[Message]) -> list[Message]:
    """This turn's items as canonical messages; reasoning items that carry a thinking block
    open the assistant message that follows them (`_reasoning`), others are not sent.

    Raises:
        InvalidRequestError: A `function_call_output` answers no call made before it, in
            `items` or in `history`, or a message holds a part its role cannot.
    """
    known_calls = {
        call.id
        for message in history
        if isinstance(message, AssistantMessage)
        for call in message.tool_calls or ()
    }
    messages: list[Message] = []
    moved: list[UserContentPart] = []  # media of function_call_outputs, after the tool messages
    thoughts: ThinkingBlocks = []  # for the next assistant message
    for at, item in enumerate(items):
        if moved and not isinstance(item, wire.FunctionCallOutput):
            messages.append(UserMessage(content=moved))
            moved = []
        if isinstance(item, wire.MessageItem):
            messages.append(_message(item, f"input[{at}]"))
        elif isinstance(item, wire.FunctionCall):
            _append_call(messages, item)
            known_calls.add(item.call_id)
        elif isinstance(item, wire.FunctionCallOutput):
            messages.append(_tool_message(item, known_calls, f"input[{at}]", moved))
        elif isinstance(item, wire.ReasoningItem):
            block = thinking_block_of(item)
            if block is not None:
                thoughts.append(block)
            continue
        if thoughts and isinstance(messages[-1], AssistantMessage):
            _add_thinking(messages[-1], thoughts)
            thoughts = []
    if moved:
        messages.append(UserMessage(content=moved))
    return messages


def conversation(
    history: list[Message], items: list[wire.InputItem], response: wire.Response
) -> list[Message]:
    """The canonical messages to store for the next turn: `history`, this turn's `items` and
    the answer in `response`, without `instructions` (OpenAI does not carry them over).

    Args:
        history: What `to_chat_request` was given.
        items: `input_items(request, ...)`.
        response: The answer, from `to_response` or `ResponsesStreamWriter.response`.
    """
    messages = [*history, *turn_messages(items, history)]
    texts: list[str] = []
    refusals: list[str] = []
    calls: list[ToolCall] = []
    thoughts: ThinkingBlocks = []
    for item in response.output:
        if isinstance(item, wire.ReasoningItem):
            block = thinking_block_of(item)
            if block is not None:
                thoughts.append(block)
        elif isinstance(item, wire.OutputMessage):
            for part in item.content:
                if isinstance(part, wire.OutputText):
                    texts.append(part.text)
                else:
                    refusals.append(part.refusal)
        elif isinstance(item, wire.FunctionCall):
            calls.append(
                ToolCall(item.call_id, "function", FunctionCall(item.name, item.arguments))
            )
    if texts or refusals or calls:
        messages.append(
            AssistantMessage(
                content="".join(texts) if texts else None,
                refusal="".join(refusals) or None,
                tool_calls=calls or None,
                thinking_blocks=thoughts or None,
            )
        )
    return messages


def _add_thinking(message: AssistantMessage, blocks: ThinkingBlocks) -> None:
    message.thinking_blocks = [*(message.thinking_blocks or ()), *blocks]


def _message(item: wire.MessageItem, path: str) -> Message:
    parts = message_parts(item.role, item.content)
    if item.role == "assistant":
        return _assistant_message(parts, path)
    if item.role == "user":
        content = [_user_part(part, f"{path}.content[{at}]") for at, part in enumerate(parts)]
        if len(content) == 1 and isinstance(content[0], TextPart):
            return UserMessage(content=content[0].text)
        return UserMessage(content=content)
    texts = [_text_part(part, item.role, f"{path}.content[{at}]") for at, part in enumerate(parts)]
    instruction = texts[0].text if len(texts) == 1 else texts
    if item.role == "system":
        return SystemMessage(content=instruction)
    return DeveloperMessage(content=instruction)


def _assistant_message(parts: list[wire.MessageContent], path: str) -> AssistantMessage:
    texts: list[str] = []
    refusals: list[str] = []
    for at, part in enumerate(parts):
        if isinstance(part, wire.OutputText):
            texts.append(part.text)
        elif isinstance(part, wire.Refusal):
            refusals.append(part.refusal)
        else:
            raise _misplaced(part, "assistant", f"{path}.content[{at}]")
    return AssistantMessage(content="".join(texts), refusal="".join(refusals) or None)


def _append_call(messages: list[Message], item: wire.FunctionCall) -> None:
    call = ToolCall(item.call_id, "function", FunctionCall(item.name, item.arguments))
    last = messages[-1] if messages else None
    if isinstance(last, AssistantMessage):  # made in this turn, so it may grow
        last.tool_calls = [*(last.tool_calls or ()), call]
    else:
        messages.append(AssistantMessage(tool_calls=[call]))


def _tool_message(
    item: wire.FunctionCallOutput, known_calls: set[str], path: str, moved: list[UserContentPart]
) -> ToolMessage:
    call_id = item.call_id or ""  # `input_items` refused a missing one
    if call_id not in known_calls:
        raise InvalidRequestError(
            f"{path}.call_id: no function_call with call_id {call_id!r} precedes this output, "
            "in this input or in the conversation previous_response_id continues.",
            param=f"{path}.call_id",
        )
    if isinstance(item.output, str):
        return ToolMessage(content=item.output, tool_call_id=call_id)
    texts: list[TextPart] = []
    for at, part in enumerate(item.output):
        if isinstance(part, wire.InputText):
            texts.append(TextPart(part.text))
        else:
            moved.append(_user_part(part, f"{path}.output[{at}]"))
    content = texts[0].text if len(texts) == 1 else texts or ""
    return ToolMessage(content=content, tool_call_id=call_id)


def _user_part(part: wire.MessageContent, path: str) -> UserContentPart:
    if isinstance(part, wire.InputText):
        return TextPart(part.text)
    if isinstance(part, wire.InputImage):
        return _image_part(part, path)
    if isinstance(part, wire.InputFile):
        return _file_part(part, path)
    raise _misplaced(part, "user", path)


def _image_part(part: wire.InputImage, path: str) -> ImagePart:
    if part.detail == "original":
        raise InvalidRequestError(f"{path}.detail: 'original' {REFUSED}.", param=f"{path}.detail")
    if not part.image_url:
        raise InvalidRequestError(
            f"{path}.image_url is required: images by file_id {REFUSED}.",
            param=f"{path}.image_url",
        )
    detail = None if part.detail == "auto" else part.detail
    return ImagePart(ImageURL(part.image_url, detail))


def _file_part(part: wire.InputFile, path: str) -> FilePart:
    if part.file_url is not None:
        raise InvalidRequestError(
            f"{path}.file_url: files by URL are not supported; send file_data.",
            param=f"{path}.file_url",
        )
    if part.detail not in (None, "auto"):
        raise InvalidRequestError(f"{path}.detail: file detail {REFUSED}.", param=f"{path}.detail")
    if part.file_data is not None:
        return FilePart(FileRef(file_data=part.file_data, filename=part.filename))
    if part.file_id is not None:
        return FilePart(FileRef(file_id=part.file_id, filename=part.filename))
    raise InvalidRequestError(
        f"{path}: an input_file needs file_data or file_id.", param=f"{path}.file_data"
    )


def _text_part(part: wire.MessageContent, role: str, path: str) -> TextPart:
    if isinstance(part, wire.InputText):
        return TextPart(part.text)
    raise _misplaced(part, role, path)


def _misplaced(part: wire.MessageContent, role: str, path: str) -> InvalidRequestError:
    kind = part.__struct_config__.tag
    return InvalidRequestError(
        f"{path}: a {kind} part is not allowed in a {role} message.", param=f"{path}.type"
    )
