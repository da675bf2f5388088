"""OpenAI wire types that are not already canonical: the error body.

The request, response and chunk of the OpenAI API *are* the canonical schema
(`stellara.schema.chat`), so they are not repeated here.
"""

from __future__ import annotations

import msgspec


class OpenAIErrorDetail(msgspec.Struct):
    message: str = ""
    type: str | None = None
    param: str | None = None
    code: str | int | None = None


class OpenAIErrorBody(msgspec.Struct):
    error: OpenAIErrorDetail


error_body_decoder = msgspec.json.Decoder(OpenAIErrorBody)
