"""The state-backend protocols and the values that cross them.

Every operation that must be exact across processes is ONE call here, so the Redis backend can
make it one atomic Lua script and one round trip: `admit` checks and reserves every limit of a
request together; `settle` corrects the reservation to what the provider actually used.
Backends decide time themselves (Redis: the server's `TIME`), never the caller's clock, so
processes with drifting clocks still agree on windows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, Protocol

Dimension = Literal["requests", "tokens", "cost_usd"]
Amounts = Mapping[Dimension, float]


@dataclass(frozen=True, slots=True)
class WindowLimit:
    """A sliding window: at most `limit` units of `dimension` in any `window_s` seconds.

    `name` identifies the window within its scope (e.g. `rate:tokens`, `burst:requests`).
    """

    name: str
    dimension: Dimension
    window_s: float
    limit: float


@dataclass(frozen=True, slots=True)
class PeriodLimit:
    """A quota over a calendar period, or over a session.

    `daily` and `monthly` periods start at midnight / the 1st in the quota's time zone, given
    as its offset from UTC at this moment (`utc_offset_s`, so the caller resolves DST). A
    `session` period is keyed by `session_id` and ends after `idle_s` without a request.
    """

    name: str
    dimension: Dimension
    period: Literal["daily", "monthly", "session"]
    limit: float
    utc_offset_s: int = 0
    session_id: str = ""
    idle_s: float = 0.0


Limit = WindowLimit | PeriodLimit


@dataclass(frozen=True, slots=True)
class LimitState:
    """One limit's use. `reset_at` (epoch seconds) is when `remaining` next grows: for a window,
    when its oldest recorded use leaves it; for a period, when the period ends."""

    name: str
    used: float
    limit: float
    remaining: float
    reset_at: float


@dataclass(frozen=True, slots=True)
class Admission:
    """The answer to `admit`.

    `states` hold every limit's use after the decision (the request's own amounts included when
    admitted). When refused, `denied_by` names the first limit without room (or `blocked`) and
    `retry_after_s` says how long until it would have room for this request.
    """

    admitted: bool
    denied_by: str | None
    retry_after_s: float
    states: tuple[LimitState, ...]
    now: float


class LimitStore(Protocol):
    """Sliding windows and quota periods per scope (a user), reserved and settled atomically."""

    async def admit(
        self, scope: str, limits: Sequence[Limit], amounts: Amounts, reservation: str
    ) -> Admission:
        """Atomically admit iff the scope is not blocked and every limit has room for the
        amount of its dimension; when admitted, record the amounts under `reservation` in every
        limit. A limit whose dimension is absent from `amounts` counts 0 for this request."""
        ...

    async def settle(
        self, scope: str, limits: Sequence[Limit], reservation: str, actual: Amounts
    ) -> None:
        """Replace the amounts recorded under `reservation` with `actual` (streams and usage
        known only after the call). A window the reservation has already left is untouched."""
        ...

    async def read(self, scope: str, limits: Sequence[Limit]) -> tuple[LimitState, ...]:
        """Every limit's current use, without recording anything."""
        ...

    async def reset(self, scope: str, names: Sequence[str] | None = None) -> None:
        """Forget the recorded use of `scope`: of every limit, or only of the named ones."""
        ...

    async def block(self, scope: str, seconds: float) -> None:
        """Refuse every `admit` of `scope` for `seconds` (burst throttling)."""
        ...


class StateBackend(Protocol):
    """One backend instance per app; `close` on shutdown."""

    @property
    def name(self) -> str:
        """`memory` or `redis`, as reported by `/readyz` and metrics."""
        ...

    @property
    def limits(self) -> LimitStore: ...

    @property
    def cache(self) -> CacheStore | None:
        """The shared cache level, or None when there is none to share (memory: the
        in-process L1 is the only level)."""
        ...

    @property
    def breakers(self) -> BreakerSync | None:
        """The circuit-breaker broadcast, or None when there is no other process to tell
        (memory)."""
        ...

    @property
    def keys(self) -> KeySync | None:
        """Virtual-key changes told to the other processes; None when there are none (memory:
        one process)."""
        ...

    @property
    def event_channel(self) -> EventChannel | None:
        """Where the gateway's events are published for tools outside it; None when the
        backend has no pub/sub (memory)."""
        ...

    @property
    def stats(self) -> StatsShare | None:
        """Where each process shares its monitoring statistics with the others; None when
        there are none (memory: one process)."""
        ...

    @property
    def sessions(self) -> SessionStore:
        """The dashboard's sign-in sessions, seen by every process sharing the backend."""
        ...

    @property
    def responses(self) -> ResponsesStore:
        """The Responses API's stored responses, seen by every process sharing the backend."""
        ...

    @property
    def arms(self) -> ArmStore:
        """Adaptive experiments' reward sums per variant, seen by every process sharing the
        backend, so every process allocates alike."""
        ...

    async def ping(self) -> bool:
        """Whether the backend answers now (readiness)."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Invalidation:
    """What another process removed from the shared cache: one `key`, or every entry of a
    `scope` and/or public `model` (both None: everything). L1 copies must follow."""

    key: str | None = None
    scope: str | None = None
    model: str | None = None


class CacheStore(Protocol):
    """The shared (L2) level of the answer cache: opaque values with TTLs, cleared by scope
    or model, and a broadcast so every process drops its L1 copies of what was removed.

    The semantic index has no shared counterpart (no vector search in Redis): each process
    keeps its own, and the store keeps the entries (`put_semantic`) so that every process can
    rebuild it (`load_semantic` at start-up, `on_semantic` from then on)."""

    async def get(self, key: str) -> bytes | None: ...

    async def put(
        self, key: str, value: bytes, ttl_s: float, *, scope: str, model: str
    ) -> None: ...

    async def delete(self, key: str) -> None:
        """Remove one entry and tell the other processes."""
        ...

    async def clear(self, *, scope: str | None = None, model: str | None = None) -> int:
        """Remove every entry (or those of one scope and/or model), tell the other processes,
        and return how many went."""
        ...

    def on_invalidation(self, callback: Callable[[Invalidation], None]) -> None:
        """Call `callback` for every removal another process broadcasts."""
        ...

    async def put_semantic(
        self, namespace: str, key: str, text: str, vector: bytes, ttl_s: float
    ) -> None:
        """Record a semantic-index entry (the exact entry `key` is stored already) for
        `ttl_s` seconds, and tell the other processes. `vector` is raw float32 bytes."""
        ...

    def on_semantic(self, callback: Callable[[str, str, str, bytes], None]) -> None:
        """Call `callback(namespace, key, text, vector)` for every semantic entry another
        process records."""
        ...

    async def load_semantic(self, limit: int) -> list[tuple[str, str, str, bytes]]:
        """The most recent unexpired semantic entries, at most `limit`, oldest first, as
        `(namespace, key, text, vector)`: what a starting process rebuilds its index from.
        Entries recorded from the call on are also heard through `on_semantic`."""
        ...


class BreakerSync(Protocol):
    """Circuit-breaker changes told to the other gateway processes, eventually.

    Nothing here is on the request path: `publish` is awaited in a background task and never
    raises (failures are logged), and remote changes arrive through `on_remote` callbacks. A
    process never hears its own messages. `state` is `open`, `half_open` or `closed`;
    `opened_at_epoch_s` is when the breaker opened (epoch seconds) while open, else None.
    """

    async def publish(self, breaker_id: str, state: str, opened_at_epoch_s: float | None) -> None:
        """Tell the other processes that `breaker_id` moved to `state`."""
        ...

    def on_remote(self, callback: Callable[[str, str, float | None], None]) -> None:
        """Call `callback(breaker_id, state, opened_at_epoch_s)` for every change another
        process publishes."""
        ...

    async def start(self) -> bool:
        """Start listening now (at app start-up: a process that never changes a breaker still
        hears the others); False if not subscribed in time (it keeps trying)."""
        ...


class KeySync(Protocol):
    """Virtual-key changes told to the other gateway processes, so that a revoked key is
    refused everywhere at once. Best effort, like `BreakerSync`; `publish` never raises."""

    async def publish(self, digest: str) -> None:
        """Tell the others that the key with `digest` was created, changed or revoked."""
        ...

    def on_changed(self, callback: Callable[[str | None], None]) -> None:
        """Call `callback(digest)` for each change another process publishes, and
        `callback(None)` when changes may have been missed (forget every key)."""
        ...

    async def start(self) -> bool:
        """Start listening now; False if not subscribed in time (it keeps trying)."""
        ...


class Epoch(NamedTuple):
    """A reset of the deployment's statistics: its id and when it happened (epoch seconds)."""

    id: str
    at: float


class StatsShare(Protocol):
    """Each gateway process's monitoring snapshot, shared so that any process can answer for
    the whole deployment, and resets that reach every process. Calls raise
    `StateBackendError` when the backend fails; `announce` never raises."""

    async def write(self, epoch: str, snapshot: Mapping[str, Any]) -> Epoch | None:
        """Store this process's `snapshot`, counted since the reset `epoch`. Refused when
        another reset happened since: then the current epoch is returned, to start again."""
        ...

    async def read(self) -> tuple[Epoch | None, list[dict[str, Any]]]:
        """The current epoch (None before the first reset) and the live snapshots of the
        other processes."""
        ...

    async def current_epoch(self) -> Epoch | None: ...

    async def reset(self, epoch: str) -> Epoch:
        """Start the epoch `epoch`: drop every snapshot. Then `announce` it."""
        ...

    async def announce(self, epoch: Epoch) -> None:
        """Tell the listening processes to start `epoch` now (best effort)."""
        ...

    async def remove(self) -> None:
        """Withdraw this process's snapshot (it is stopping)."""
        ...

    def on_reset(self, callback: Callable[[Epoch], None]) -> None:
        """Call `callback(epoch)` for each reset another process announces."""
        ...

    async def start(self) -> bool:
        """Listen for resets; False when not subscribed in time (it keeps trying)."""
        ...

    async def close(self) -> None:
        """Stop listening."""
        ...


class SessionStore(Protocol):
    """Dashboard sessions, kept where every gateway process checks them, so that ending one
    (sign-out) ends it everywhere at once.

    A session is known by the `digest` of its token, never the token itself, and holds the
    `key_fingerprint` of the master key that opened it (the caller compares it with its own,
    so a new master key ends every session). Each session expires `ttl_s` after it was
    opened, by the backend's clock, and leaves the store by itself. Calls raise
    `StateBackendError` when the backend fails.
    """

    async def open(self, digest: str, key_fingerprint: str, ttl_s: float) -> None:
        """Start the session `digest` for `ttl_s` seconds."""
        ...

    async def find(self, digest: str) -> str | None:
        """The key fingerprint of the live session `digest`; None when there is none (never
        opened, expired, revoked, or pushed out of a full memory store)."""
        ...

    async def revoke(self, digest: str) -> None:
        """End the session `digest` now, if it is live."""
        ...


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """What `ResponsesStore.get` finds: the `user` who stored it and the caller's `blob`."""

    user: str
    blob: bytes


def stored_bytes(response_id: str, user: str, blob: bytes) -> int:
    """What one stored response counts against `max_stored_bytes`: its id, user and blob, in
    bytes. The backends' own bookkeeping is not counted, so the cap is in the caller's terms
    and the same on every backend."""
    return len(response_id.encode()) + len(user.encode()) + len(blob)


def done() -> Awaitable[None]:
    """An awaitable that has already ended: `start_put`'s when the write was done at once."""
    finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    finished.set_result(None)
    return finished


class ResponsesStore(Protocol):
    """The Responses API's stored responses (`store: true`), kept where every gateway process
    finds them, so that `previous_response_id` continues a conversation on any of them.

    Values are opaque bytes: the caller encodes what it stores (the response, its input
    items, the conversation so far). Each entry expires `ttl_s` after it was stored, by the
    backend's clock. All entries together hold at most `max_stored_bytes` (as
    `stored_bytes` counts them): storing past it evicts the oldest-stored entries first, so
    the conversations that go on keep their latest turns. The store keeps the `user` but
    does not scope by it: the caller answers 404 for another user's response. Calls raise
    `StateBackendError` when the backend fails.
    """

    async def start_put(
        self, response_id: str, user: str, blob: bytes, ttl_s: float, *, max_stored_bytes: int
    ) -> Awaitable[None]:
        """Store `blob` under `response_id` for `ttl_s` seconds, replacing any entry of that
        id, after evicting the oldest entries until all fit in `max_stored_bytes`.

        Returns once the write is ordered before any call made after it, from any process
        (sent to the backend, which runs calls in the order they arrive); the returned
        awaitable ends when the write is done and raises `StateBackendError` if it failed.
        So a caller can answer before the backend replies, and a client that continues the
        conversation at once still finds it.

        The cap comes with each call, as the TTL does, so that it is the current
        configuration's whichever backend instance serves it.

        Raises:
            StoredResponseTooLargeError: the entry alone is larger than `max_stored_bytes`;
                nothing was stored or evicted.
        """
        ...

    async def get(self, response_id: str) -> StoredResponse | None:
        """The live entry `response_id`; None when there is none (never stored, expired,
        deleted or evicted)."""
        ...

    async def delete(self, response_id: str) -> bool:
        """Remove the entry `response_id` now; whether there was a live one."""
        ...


class EventChannel(Protocol):
    """A pub/sub channel: whoever listens hears what is published, from every process;
    nothing is stored."""

    @property
    def name(self) -> str:
        """The channel's name, for status and log lines."""
        ...

    async def publish(self, messages: Sequence[bytes]) -> None:
        """Publish `messages` in order; `StateBackendError` when the backend fails."""
        ...


class ArmSums(NamedTuple):
    """One variant's rewards so far: their count, sum and sum of squares."""

    n: float
    total: float
    total_sq: float


class ArmStore(Protocol):
    """The reward sums of each adaptive experiment's variants (one reward per feedback)."""

    async def add(self, experiment: str, variant: str, reward: float) -> None:
        """Count one `reward` for `variant` (raises `StateBackendError` when unreachable)."""
        ...

    async def read(self, experiment: str) -> dict[str, ArmSums]:
        """Every variant's sums; variants without rewards are absent."""
        ...

    async def clear(self, experiment: str) -> None:
        """Forget `experiment`'s rewards (it was deleted, or restarted under its id)."""
        ...
