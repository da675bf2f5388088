"""`DashboardSessions` on the memory store: tokens are random and checked against the store,
sign-out and a new master key end them, and the store is never asked about what cannot be a
token."""

from __future__ import annotations

import hashlib
import hmac
import re

from stellara.pipeline.sessions import SESSION_S, DashboardSessions
from stellara.state.memory import MemorySessionStore
from stellara.testing import ManualClock

MASTER_KEY = "sk-master-key-999"


class CountingStore(MemorySessionStore):
    """A memory store that counts lookups."""

    def __init__(self, clock: ManualClock) -> None:
        super().__init__(clock)
        self.finds = 0

    async def find(self, digest: str) -> str | None:
        self.finds += 1
        return await super().find(digest)


def sessions(master_key: str | None = MASTER_KEY) -> DashboardSessions:
    return DashboardSessions(master_key, MemorySessionStore(ManualClock()))


async def test_sessions_issue_random_256_bit_tokens() -> None:
    dashboard = sessions()
    tokens = {await dashboard.issue() for _ in range(20)}
    assert len(tokens) == 20
    for token in tokens:
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token)  # 32 bytes, URL-safe base64
        assert await dashboard.is_valid(token)


async def test_sessions_store_the_digest_and_a_token_keyed_fingerprint() -> None:
    store = MemorySessionStore(ManualClock())
    token = await DashboardSessions(MASTER_KEY, store).issue()
    digest = hashlib.sha256(token.encode()).hexdigest()
    message = f"stellara-dashboard-session:{token}".encode()
    expected = hmac.new(MASTER_KEY.encode(), message, hashlib.sha256).hexdigest()
    assert await store.find(digest) == expected


async def test_sessions_end_at_expiry_sign_out_and_a_new_master_key() -> None:
    clock = ManualClock()
    store = MemorySessionStore(clock)
    dashboard = DashboardSessions(MASTER_KEY, store)
    expiring, revoked, rotated = [await dashboard.issue() for _ in range(3)]
    await dashboard.revoke(revoked)
    assert not await dashboard.is_valid(revoked)
    assert not await DashboardSessions("sk-new-master-key", store).is_valid(rotated)
    clock.advance(SESSION_S - 1)
    assert await dashboard.is_valid(expiring)
    clock.advance(1)
    assert not await dashboard.is_valid(expiring)


async def test_sessions_ask_the_store_only_about_well_formed_tokens() -> None:
    store = CountingStore(ManualClock())
    dashboard = DashboardSessions(MASTER_KEY, store)
    token = await dashboard.issue()
    for cookie in (None, "", token[:-1], token + "A", "\u00b2" * 43, "9" * 5000, " " + token[1:]):
        assert not await dashboard.is_valid(cookie), cookie
        await dashboard.revoke(cookie)
    assert store.finds == 0
    assert await dashboard.is_valid(token)


async def test_sessions_without_master_key_never_open() -> None:
    dashboard = sessions(master_key=None)
    assert not dashboard.is_open
    assert not dashboard.is_master_key("")
    assert not await dashboard.is_valid("A" * 43)
