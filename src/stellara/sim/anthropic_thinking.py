"""Extended thinking for the Anthropic simulator: signed thinking blocks, and the rules the real
API holds a conversation with thinking to.

With ``thinking`` on (``enabled`` with a budget, or ``adaptive``), an answer starts with a
thinking block whose ``signature`` is an HMAC of its text under a key of this simulator, so only
blocks it issued verify. When such a block comes back in the history, its signature must verify
(a tampered or foreign one is refused, as the real API refuses it); and with thinking on, the
last assistant turn that calls tools must start with its thinking block, as the real API
requires within a tool loop.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os


class ThinkingRefusedError(Exception):
    """The request breaks a thinking rule; the message is the real API's."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ThinkingSigner:
    """Signs and checks thinking blocks for one simulator (a fresh key per process)."""

    def __init__(self) -> None:
        self._key = os.urandom(32)

    def sign(self, thinking: str) -> str:
        digest = hmac.new(self._key, thinking.encode(), hashlib.sha256).digest()
        return base64.b64encode(b"sim-thinking:" + digest).decode()

    def verifies(self, thinking: str, signature: str) -> bool:
        return hmac.compare_digest(self.sign(thinking), signature)


def thinking_text(question: str) -> str:
    """The simulator's deterministic reasoning about ``question``."""
    words = question.split()[:12]
    topic = " ".join(words) if words else "the request"
    return f"The user asks about: {topic}. I should answer briefly and plainly."


def check_budget(budget_tokens: int | None, max_tokens: int) -> None:
    """``enabled`` thinking needs a budget below ``max_tokens`` (the decoder checks ≥ 1024)."""
    if budget_tokens is None:
        raise ThinkingRefusedError("thinking.enabled.budget_tokens: Field required")
    if budget_tokens >= max_tokens:
        raise ThinkingRefusedError(
            "`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our "
            "documentation at https://docs.claude.com/en/docs/build-with-claude/"
            "extended-thinking#max-tokens-and-context-window-size"
        )


def check_last_tool_turn(at: int, first_block_type: str) -> None:
    """With thinking on, the last assistant turn that calls tools starts with thinking."""
    if first_block_type not in ("thinking", "redacted_thinking"):
        raise ThinkingRefusedError(
            f"messages.{at}.content.0.type: Expected `thinking` or `redacted_thinking`, but "
            f"found `{first_block_type}`. When `thinking` is enabled, a final `assistant` "
            "message must start with a thinking block (preceeding the lastmost set of "
            "`tool_use` and `tool_result` blocks). We recommend you include thinking blocks "
            "from previous turns. To avoid this requirement, disable `thinking`."
        )


def invalid_signature(at: int, index: int) -> ThinkingRefusedError:
    return ThinkingRefusedError(
        f"messages.{at}.content.{index}: Invalid `signature` in `thinking` block"
    )
