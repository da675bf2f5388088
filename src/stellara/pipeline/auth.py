"""Who is calling: a bearer key → the principal it stands for.

Keys come from three places: the master key and the static `keys:` of the config (held as
digests, checked in memory), and virtual keys in the SQL store (looked up by digest on first
use, then trusted for `cache_ttl_s`). A key changed through the admin API is forgotten at
once in this process and, through the state backend's `KeySync`, in every other one; without
one (memory state) other processes see the change within `cache_ttl_s`. Expiry is checked on
every request, cached or not.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections import OrderedDict
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import ValidationError

from stellara._clock import Clock, SystemClock
from stellara.config.models import KeyConfig, TierConfig
from stellara.errors import AuthenticationError, PermissionDeniedError, StoreUnavailableError
from stellara.principal import Principal
from stellara.state.base import KeySync
from stellara.store.keys import KeyRecord, key_digest

logger = logging.getLogger(__name__)

MAX_CACHED_KEYS = 100_000
# An unknown key is remembered as unknown this long at most: brief, so a key created on
# another process (without a KeySync to say so) works within a second.
UNKNOWN_KEY_TTL_S = 1.0


class KeyLookup(Protocol):
    async def find(self, digest: str) -> KeyRecord | None: ...


@dataclass(frozen=True, slots=True)
class _Cached:
    principal: Principal | None  # None: the key is unknown or revoked
    refusal: str
    fresh_until: float  # monotonic


class Authenticator:
    """Resolves bearer keys to principals."""

    def __init__(
        self,
        master_key: str | None,
        keys: Iterable[KeyConfig],
        *,
        store: KeyLookup | None = None,
        sync: KeySync | None = None,
        clock: Clock | None = None,
        cache_ttl_s: float = 5.0,
        master_key_model_calls: bool = False,
    ) -> None:
        """`master_key_model_calls` lets the master key call models too; by default it only
        opens the admin and management routes, so a leaked application config holding it
        cannot be confused with an ordinary key."""
        self._master_digest = key_digest(master_key).encode() if master_key else None
        self._by_digest: dict[str, Principal] = {}
        for key in keys:
            digest = key_digest(key.key.get_secret_value())
            allowed = frozenset(key.models) if key.models is not None else None
            self._by_digest[digest] = Principal(
                key.user,
                digest[:12],
                allowed,
                tier=key.tier,
                team=key.team,
                may_pin_variants=key.may_pin_variants,
            )
        self._store = store
        self._sync = sync
        self._clock = clock or SystemClock()
        self._cache_ttl_s = cache_ttl_s
        self._master_key_model_calls = master_key_model_calls
        self._cached: OrderedDict[str, _Cached] = OrderedDict()
        self._lookups: dict[str, asyncio.Future[_Cached]] = {}
        self._publishing: set[asyncio.Task[None]] = set()
        if sync is not None:
            sync.on_changed(self._forget_locally)

    def add(self, key: str, principal: Principal) -> None:
        """Accept one more key for the life of the process (the demo key)."""
        self._by_digest[key_digest(key)] = principal

    async def authenticate(self, token: str | None, *, model_call: bool = False) -> Principal:
        """The principal for `token`; raises `AuthenticationError` for a missing, unknown,
        revoked or expired key, `StoreUnavailableError` for a virtual key this process has
        not seen while the store is down, and `PermissionDeniedError` for the master key on
        a `model_call` unless allowed."""
        if not token:
            raise AuthenticationError(
                "Missing API key: send it as 'Authorization: Bearer <key>' or 'x-api-key'."
            )
        digest = key_digest(token)
        principal = self._by_digest.get(digest)
        if principal is not None:
            return principal
        if self._is_master_digest(digest):
            if model_call and not self._master_key_model_calls:
                raise PermissionDeniedError(
                    "The master key opens the admin and management routes only; call models "
                    "with a virtual key (or set server.master_key_model_calls: true).",
                    code="master_key_not_allowed",
                )
            return Principal("admin", "master", None, is_master=True)
        if self._store is None:
            raise AuthenticationError("Invalid API key.")
        cached = self._cached.get(digest)
        if cached is None or cached.fresh_until <= self._clock.monotonic():
            cached = await self._look_up(digest, cached)
        if cached.principal is None:
            raise AuthenticationError(cached.refusal)
        expires_at = cached.principal.expires_at
        if expires_at is not None and self._clock.time() >= expires_at:
            raise AuthenticationError("This API key has expired.")
        return cached.principal

    def is_master(self, token: str | None) -> bool:
        return bool(token) and self._is_master_digest(key_digest(token or ""))

    def forget(self, digest: str) -> None:
        """The key with `digest` changed (admin API): forget it here, and tell the other
        processes in the background."""
        self._forget_locally(digest)
        if self._sync is not None:
            self._in_background(self._sync.publish(digest))

    async def start(self) -> None:
        """Listen for other processes' key changes (app start-up)."""
        if self._sync is not None and not await self._sync.start():
            logger.warning("key changes of other processes unheard yet; still trying")

    async def close(self) -> None:
        """Let pending change notices go out (app shutdown)."""
        if self._publishing:
            await asyncio.gather(*self._publishing, return_exceptions=True)

    def _is_master_digest(self, digest: str) -> bool:
        return self._master_digest is not None and hmac.compare_digest(
            digest.encode(), self._master_digest
        )

    def _forget_locally(self, digest: str | None) -> None:
        if digest is None:
            self._cached.clear()
        else:
            self._cached.pop(digest, None)

    async def _look_up(self, digest: str, stale: _Cached | None) -> _Cached:
        """One store lookup per digest at a time, however many requests wait for it. While
        the store is down, a key known before keeps working as it was."""
        pending = self._lookups.get(digest)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[_Cached] = asyncio.get_running_loop().create_future()
        self._lookups[digest] = future
        try:
            entry = await self._fetch(digest)
        except StoreUnavailableError as exc:
            if stale is None:
                future.set_exception(exc)
                future.exception()  # retrieved here: waiters re-raise their own copy
                raise
            logger.warning("key store unavailable; a cached key is trusted as it was")
            entry = _Cached(stale.principal, stale.refusal, self._clock.monotonic() + 1.0)
        finally:
            del self._lookups[digest]
        self._remember(digest, entry)
        future.set_result(entry)
        return entry

    async def _fetch(self, digest: str) -> _Cached:
        assert self._store is not None
        record = await self._store.find(digest)
        now = self._clock.monotonic()
        if record is None:
            unknown_ttl_s = min(UNKNOWN_KEY_TTL_S, self._cache_ttl_s)
            return _Cached(None, "Invalid API key.", now + unknown_ttl_s)
        if record.revoked_at is not None:
            return _Cached(None, "This API key has been revoked.", now + self._cache_ttl_s)
        return _Cached(_principal(record), "", now + self._cache_ttl_s)

    def _remember(self, digest: str, entry: _Cached) -> None:
        self._cached[digest] = entry
        self._cached.move_to_end(digest)
        if len(self._cached) > MAX_CACHED_KEYS:
            self._cached.popitem(last=False)

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        try:
            task = asyncio.get_running_loop().create_task(work)
        except RuntimeError:  # no loop: no other process can be told from here
            work.close()
            return
        self._publishing.add(task)
        task.add_done_callback(self._publishing.discard)


def _principal(record: KeyRecord) -> Principal:
    limits: TierConfig | None = None
    if record.limits:
        try:
            limits = TierConfig.model_validate(record.limits)
        except ValidationError:
            # Stored through the validating admin API; a hand edit must not lock the key out.
            logger.warning("key %s has invalid limits in the store; ignored", record.key_id)
    return Principal(
        record.user,
        record.key_id,
        frozenset(record.models) if record.models is not None else None,
        tier=record.tier,
        team=record.team,
        key_prefix=record.prefix,
        expires_at=record.expires_at,
        limits=limits,
        may_pin_variants=record.may_pin_variants,
    )
