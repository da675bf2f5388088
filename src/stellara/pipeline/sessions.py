"""Dashboard sessions: a browser signs in with the master key once and then carries a random
session token instead of the key.

The token (256 random bits, URL-safe base64) lives in the browser only. The state backend's
`SessionStore` keeps, per session, the token's SHA-256 digest and a fingerprint of the master
key that opened it, `HMAC-SHA256(master key, "stellara-dashboard-session:" + token)`, with
the session's expiry: a check looks the digest up on every request, so a sign-out (`revoke`)
ends the session on every process sharing the backend at once, and a process with another
master key computes another fingerprint and refuses every earlier session. The fingerprint
is keyed with the token so that what the backend holds at rest cannot be used to test guesses
of the master key.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from stellara.state.base import SessionStore

SESSION_S = 12 * 3600
_TOKEN_BYTES = 32
_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")  # what token_urlsafe(32) gives, and nothing else


class DashboardSessions:
    """Issues, checks and revokes session tokens; with no master key configured, none is
    valid and the store is never asked.

    `issue`, `is_valid` and `revoke` raise `StateBackendError` when the store fails: the
    caller answers 503, never signed-in by default.
    """

    def __init__(self, master_key: str | None, store: SessionStore) -> None:
        self._secret = master_key.encode() if master_key else None
        self._store = store

    @property
    def is_open(self) -> bool:
        """Whether anyone can sign in (a master key is configured)."""
        return self._secret is not None

    def is_master_key(self, key: str) -> bool:
        return self._secret is not None and hmac.compare_digest(key.encode(), self._secret)

    async def issue(self) -> str:
        """A new token valid for `SESSION_S`; only after `is_master_key` said yes."""
        token = secrets.token_urlsafe(_TOKEN_BYTES)
        await self._store.open(_digest(token), self._fingerprint(token), SESSION_S)
        return token

    async def is_valid(self, token: str | None) -> bool:
        if self._secret is None or token is None or not _TOKEN.fullmatch(token):
            return False  # nothing to ask the store about
        key_fingerprint = await self._store.find(_digest(token))
        return key_fingerprint is not None and hmac.compare_digest(
            key_fingerprint, self._fingerprint(token)
        )

    async def revoke(self, token: str | None) -> None:
        """End the session of `token` on every process (sign-out); any other value is
        ignored."""
        if token is not None and _TOKEN.fullmatch(token):
            await self._store.revoke(_digest(token))

    def _fingerprint(self, token: str) -> str:
        assert self._secret is not None
        message = f"stellara-dashboard-session:{token}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
