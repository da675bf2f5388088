"""The `x-ratelimit-*` headers of a model call's answer.

Limits are the tier's `rate.requests` / `rate.tokens`; remaining counts the current request
(its token estimate, for tokens, since the headers leave before the answer's usage is known);
reset is how long until `remaining` next grows, when the oldest use in the sliding window
leaves it, in OpenAI's duration format (`1s`, `6m0s`, `250ms`) so clients that parse OpenAI's
headers parse ours. `Retry-After` carries whole seconds for those that do not.
"""

from __future__ import annotations

from stellara.state.base import Admission

_HEADERS = (("requests", "rate:requests"), ("tokens", "rate:tokens"))


def ratelimit_headers(admission: Admission) -> dict[str, str]:
    """The headers for the `rate:` windows the tier configures (none for the others)."""
    headers: dict[str, str] = {}
    for suffix, name in _HEADERS:
        state = next((s for s in admission.states if s.name == name), None)
        if state is None:
            continue
        headers[f"x-ratelimit-limit-{suffix}"] = str(int(state.limit))
        headers[f"x-ratelimit-remaining-{suffix}"] = str(int(state.remaining))
        headers[f"x-ratelimit-reset-{suffix}"] = format_duration(state.reset_at - admission.now)
    return headers


def format_duration(seconds: float) -> str:
    """A duration as OpenAI writes it (Go's `time.Duration` style): `0s`, `250ms`, `17.5s`,
    `6m0s`, `1h2m3s`; milliseconds are the finest unit."""
    millis = max(0, round(seconds * 1000))
    if millis == 0:
        return "0s"
    if millis < 1000:
        return f"{millis}ms"
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs = f"{rest / 1000:.3f}".rstrip("0").rstrip(".")
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"
