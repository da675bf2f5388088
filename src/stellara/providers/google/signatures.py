"""Gemini thought signatures carried through an OpenAI client inside the tool call id.

Gemini signs the function calls of a thinking model (`thoughtSignature` on the part) and wants
each signature back on the same call in later turns; Gemini 3 refuses a function-call turn
without it. An OpenAI client has no field for it but echoes `tool_calls[].id` exactly, so the
signature rides in the id:

    call_<24 hex>__thoughtsig__<signature>

The signature's standard base64 is written in the URL-safe alphabet without padding (`+` → `-`,
`/` → `_`), so the id keeps to `[A-Za-z0-9_-]`, the characters every provider accepts in an id.
The gateway's own part (`call_` and hex) never holds the separator, so the first one splits.
A call without a signature keeps a plain id.
"""

from __future__ import annotations

SEPARATOR = "__thoughtsig__"
_TO_URL_SAFE = str.maketrans("+/", "-_")
_FROM_URL_SAFE = str.maketrans("-_", "+/")


def with_signature(call_id: str, signature: str | None) -> str:
    """The id to hand the client: `call_id`, carrying `signature` when there is one."""
    if not signature:
        return call_id
    return f"{call_id}{SEPARATOR}{signature.translate(_TO_URL_SAFE).rstrip('=')}"


def signature_of(call_id: str) -> str | None:
    """The signature (standard base64, padded) carried in a tool call id, if any."""
    _, separator, encoded = call_id.partition(SEPARATOR)
    if not separator or not encoded:
        return None
    return (encoded + "=" * (-len(encoded) % 4)).translate(_FROM_URL_SAFE)
