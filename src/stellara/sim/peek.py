"""A glance at a JSON request body, for fault matching before the body is validated."""

from __future__ import annotations

from typing import Any

import msgspec


class _Peek(msgspec.Struct):
    model: Any = None
    stream: Any = None


_decoder = msgspec.json.Decoder(_Peek)


def peek_body(raw: bytes) -> tuple[str | None, bool]:
    """`(model, is_stream)` from a body with top-level `model` and `stream`; bad input is
    `(None, False)` (the handler then refuses it properly)."""
    try:
        peeked = _decoder.decode(raw)
    except msgspec.DecodeError:
        return None, False
    model = peeked.model if isinstance(peeked.model, str) else None
    return model, peeked.stream is True
