"""The JSON codecs of the hot path: msgspec for typed structs, orjson for plain values."""

from __future__ import annotations

from typing import Any

import msgspec
import orjson

encoder = msgspec.json.Encoder()
encode = encoder.encode


def dumps(value: Any) -> bytes:
    """Serialise plain Python values (dicts, lists) to JSON bytes."""
    return orjson.dumps(value)


def loads(data: bytes | str) -> Any:
    """Parse JSON into plain Python values; raises `orjson.JSONDecodeError`."""
    return orjson.loads(data)
