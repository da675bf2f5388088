"""A request's input as items: decoded one by one, normalized, with ids.

Item ids are derived from the response id and the item's place, so that they are stable (a
response and its stream name items alike) without a random source in a pure translator, and
unique across responses because response ids are.
"""

from __future__ import annotations

import hashlib
import re

import msgspec
from msgspec import Raw

from stellara.errors import InvalidRequestError
from stellara.inbound.bounds import ERROR_CODE, MAX_CONTENT_PARTS
from stellara.wire import responses as wire

_AT = re.compile(r" - at `\$\.?([^`]*)`$")


def item_id(prefix: str, response_id: str, place: str) -> str:
    """`<prefix>_<32 hex>`, the same for the same response and place."""
    digest = hashlib.blake2b(f"{response_id}/{place}".encode(), digest_size=16).hexdigest()
    return f"{prefix}_{digest}"


def output_id(prefix: str, response_id: str, output_index: int) -> str:
    """The id of the output item at `output_index`."""
    return item_id(prefix, response_id, f"out{output_index}")


def input_items(request: wire.ResponsesRequest, *, response_id: str) -> list[wire.InputItem]:
    """The request's input as items, as they are stored and listed: a string input is one
    user message; every item has an id (its own, or one derived from `response_id`) and a
    status, every message a list of content parts.

    Raises:
        InvalidRequestError: An item is malformed, of a type the gateway does not translate,
            or the items hold more content parts than `bounds.MAX_CONTENT_PARTS`.
    """
    if isinstance(request.input, str):
        message_id = item_id("msg", response_id, "in0")
        content: list[wire.MessageContent] = [wire.InputText(request.input)]
        return [wire.MessageItem("user", content, id=message_id, status="completed")]
    items: list[wire.InputItem] = []
    parts = 0
    for at, raw in enumerate(request.input):
        item = _normalized(_decoded(raw, f"input[{at}]"), response_id, at)
        if isinstance(item, wire.MessageItem):
            parts += len(item.content)
        elif isinstance(item, wire.FunctionCallOutput) and isinstance(item.output, list):
            parts += len(item.output)
        items.append(item)
    if parts > MAX_CONTENT_PARTS:
        raise InvalidRequestError(
            f"input: {parts} content parts in all; at most {MAX_CONTENT_PARTS} are accepted.",
            param="input",
            code=ERROR_CODE,
        )
    return items


def message_parts(role: str, content: str | list[wire.MessageContent]) -> list[wire.MessageContent]:
    """A message's content as a list of parts; an assistant's text is `output_text`."""
    if role == "assistant":
        if isinstance(content, str):
            return [wire.OutputText(content)]
        return [wire.OutputText(p.text) if isinstance(p, wire.InputText) else p for p in content]
    if isinstance(content, str):
        return [wire.InputText(content)]
    return content


def _decoded(raw: Raw, path: str) -> wire.InputItem:
    try:
        kind = wire.item_type_decoder.decode(raw).type or "message"
        decoder = wire.item_decoders.get(kind)
        if decoder is None:
            raise InvalidRequestError(
                f"{path}.type: input items of type {kind!r} are not supported; the gateway "
                "takes messages, function calls, their outputs and reasoning items.",
                param=f"{path}.type",
            )
        item: wire.InputItem = decoder.decode(raw)
    except msgspec.ValidationError as exc:
        text = str(exc)
        match = _AT.search(text)
        inner = match.group(1) if match else ""
        param = f"{path}{inner}" if inner.startswith("[") or not inner else f"{path}.{inner}"
        message = _AT.sub("", text)
        raise InvalidRequestError(
            f"Invalid request body at '{param}': {message}", param=param
        ) from exc
    return item


def _normalized(item: wire.InputItem, response_id: str, at: int) -> wire.InputItem:
    place = f"in{at}"
    if isinstance(item, wire.MessageItem):
        return wire.MessageItem(
            item.role,
            message_parts(item.role, item.content),
            id=item.id or item_id("msg", response_id, place),
            status=item.status or "completed",
            phase=item.phase,
        )
    if isinstance(item, wire.FunctionCall):
        call_item_id = item.id or item_id("fc", response_id, place)
        return msgspec.structs.replace(item, id=call_item_id, status=item.status or "completed")
    if isinstance(item, wire.FunctionCallOutput):
        if not item.call_id:
            raise InvalidRequestError(
                f"input[{at}].call_id is required.", param=f"input[{at}].call_id"
            )
        output_item_id = item.id or item_id("fco", response_id, place)
        return msgspec.structs.replace(item, id=output_item_id, status=item.status or "completed")
    if isinstance(item, wire.ReasoningItem):
        return msgspec.structs.replace(item, status=item.status or "completed")
    raise InvalidRequestError(
        f"input[{at}]: item_reference is not supported; send the item itself, or continue a "
        "stored conversation with previous_response_id.",
        param=f"input[{at}]",
    )
