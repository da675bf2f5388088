"""The `Retry-After` header of a provider's answer, as seconds the attempt loop can wait."""

from __future__ import annotations

import math

MAX_RETRY_AFTER_S = 3600.0  # a provider asking for longer is treated as asking for an hour


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a `Retry-After` header (delta-seconds form; dates are rare upstream)."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return min(seconds, MAX_RETRY_AFTER_S)
