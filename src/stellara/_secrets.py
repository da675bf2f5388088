"""Keeping known secrets out of text that leaves the gateway (error messages, events)."""

from __future__ import annotations

from collections.abc import Iterable

# Shorter values (`none`, `k`) are placeholders, and replacing them would mangle messages.
MIN_SECRET_CHARS = 8


def masked(secret: str) -> str:
    """How a secret is shown when it must be named at all: `sk-…abcd`."""
    return f"{secret[:3]}…{secret[-4:]}"


class SecretScrubber:
    """Replaces every known secret in a text by its masked form."""

    def __init__(self, secrets: Iterable[str]) -> None:
        # Longest first: a secret containing another is masked whole.
        self._secrets = sorted(
            {s for s in secrets if len(s) >= MIN_SECRET_CHARS}, key=len, reverse=True
        )

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, masked(secret))
        return text
