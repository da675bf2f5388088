"""What is decided before a model call's body is read, in this process, with no state call.

- **Refusals that no request can pass are remembered.** When a limit refuses a caller and no
  request could pass it before it resets (a request count used up, a burst block, a token
  window already overdrawn), the caller's next requests are refused at once until then (at
  most `MEMO_MAX_S`, so a reset made on another process is heard soon): their bodies are never
  read or decoded, and Redis is not asked. A tenant over its limit cannot make the gateway
  work for it by sending large bodies.
- **Concurrency per tenant.** A tier's `concurrency` caps the model calls one user may have in
  flight on one gateway process, so that no tenant can occupy the event loop or the provider
  connection pools; a call over it is refused at once (429, `concurrency_limit_exceeded`).
"""

from __future__ import annotations

import math
from collections import Counter, OrderedDict
from dataclasses import dataclass

from stellara._clock import Clock
from stellara.errors import ConcurrencyLimitedError, RateLimitedError
from stellara.events import LimitRefused
from stellara.limits.policy import LimitsPolicy
from stellara.principal import Principal

MEMO_MAX_S = 10.0
MAX_REMEMBERED = 100_000
KEY_LIMIT_MARK = "@key:"  # a virtual key's own limits are named `<limit>@key:<key_id>`


@dataclass(slots=True)
class Refusal:
    """A refusal remembered until `until` (monotonic): the error to answer each repeat with
    (a new one each time: one exception raised again and again would pile up tracebacks), and
    the event that reported it (published again with each repeat's request id)."""

    until: float
    kind: type[RateLimitedError]
    message: str
    event: LimitRefused | None

    def error(self, now: float) -> RateLimitedError:
        return self.kind(self.message, retry_after_s=max(1, math.ceil(self.until - now)))


class ConcurrencySlot:
    """One model call's place in the concurrency counts it is limited by (its user's, its
    key's); `release` it when the call ends (a second release does nothing)."""

    __slots__ = ("_counts", "_scopes")

    def __init__(self, counts: Counter[str], scopes: tuple[str, ...]) -> None:
        self._counts = counts
        self._scopes = scopes
        for scope in scopes:
            counts[scope] += 1

    def release(self) -> None:
        for scope in self._scopes:
            self._counts[scope] -= 1
            if self._counts[scope] <= 0:
                del self._counts[scope]
        self._scopes = ()


class AdmissionGuard:
    """The checks above, for one gateway process."""

    def __init__(self, policy: LimitsPolicy, clock: Clock) -> None:
        self._policy = policy
        self._clock = clock
        self._refusals: OrderedDict[str, Refusal] = OrderedDict()
        self._in_flight: Counter[str] = Counter()

    def check(self, principal: Principal) -> tuple[Refusal | None, ConcurrencySlot | None]:
        """The refusal remembered for `principal` (answer it), else the slot of its call
        (None when its tier sets no concurrency). Raises the concurrency refusal."""
        if self._refusals:
            refusal = self._remembered(f"u:{principal.user}") or self._remembered(
                f"k:{principal.key_id}"
            )
            if refusal is not None:
                return refusal, None
        return None, self._slot(principal)

    def remember(self, user: str, limit: str, refusal: Refusal) -> None:
        """Refuse `user` (or only its key, for a key's own limit `…@key:<key_id>`) until
        `refusal.until`."""
        _, mark, key_id = limit.partition(KEY_LIMIT_MARK)
        scope = f"k:{key_id}" if mark else f"u:{user}"
        refusal.until = min(refusal.until, self._clock.monotonic() + MEMO_MAX_S)
        self._refusals[scope] = refusal
        self._refusals.move_to_end(scope)
        if len(self._refusals) > MAX_REMEMBERED:
            self._refusals.popitem(last=False)

    def forget(self, user: str) -> None:
        """The user's limits were reset here: refuse nothing from memory."""
        self._refusals.pop(f"u:{user}", None)

    def in_flight(self, user: str) -> int:
        """Model calls of `user` in flight on this process (counted when a limit applies)."""
        return self._in_flight.get(f"u:{user}", 0)

    def _remembered(self, scope: str) -> Refusal | None:
        refusal = self._refusals.get(scope)
        if refusal is None:
            return None
        if refusal.until <= self._clock.monotonic():
            del self._refusals[scope]
            return None
        return refusal

    def _slot(self, principal: Principal) -> ConcurrencySlot | None:
        user = principal.user
        tier = self._policy.tier_config(user, self._policy.tier_of(user, principal.tier))
        key_limits = principal.limits
        limits = (
            (f"u:{user}", tier.concurrency if tier is not None else None, "your tier"),
            (f"k:{principal.key_id}", key_limits.concurrency if key_limits else None, "this key"),
        )
        scopes = []
        for scope, limit, whose in limits:
            if limit is None:
                continue
            if self._in_flight.get(scope, 0) >= limit:
                raise ConcurrencyLimitedError(
                    f"Too many requests in flight ({limit} at once for {whose}); retry when "
                    "one has finished.",
                    limit=limit,
                )
            scopes.append(scope)
        return ConcurrencySlot(self._in_flight, tuple(scopes)) if scopes else None
