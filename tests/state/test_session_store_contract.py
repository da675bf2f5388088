"""The `SessionStore` contract: every test runs against memory (manual clock) and Redis (real
time, short TTLs); then what only the memory store must show, its size cap."""

from __future__ import annotations

from stellara.state.memory import MemorySessionStore
from stellara.testing import ManualClock
from tests.state.conftest import Harness

DIGEST = "a" * 64
OTHER = "b" * 64
FINGERPRINT = "f" * 64


async def test_session_opened_is_found_with_its_key_fingerprint(harness: Harness) -> None:
    store = harness.backend.sessions
    await store.open(DIGEST, FINGERPRINT, 60.0)
    assert await store.find(DIGEST) == FINGERPRINT
    assert await store.find(OTHER) is None


async def test_session_revoked_is_gone_and_others_stay(harness: Harness) -> None:
    store = harness.backend.sessions
    await store.open(DIGEST, FINGERPRINT, 60.0)
    await store.open(OTHER, FINGERPRINT, 60.0)
    await store.revoke(DIGEST)
    assert await store.find(DIGEST) is None
    assert await store.find(OTHER) == FINGERPRINT
    await store.revoke(DIGEST)  # twice, or never opened: nothing to do, no error
    await store.revoke("c" * 64)


async def test_session_expires_after_its_ttl(harness: Harness) -> None:
    store = harness.backend.sessions
    await store.open(DIGEST, FINGERPRINT, 0.2)
    await store.open(OTHER, FINGERPRINT, 60.0)
    await harness.advance(0.1)
    assert await store.find(DIGEST) == FINGERPRINT
    await harness.advance(0.15)
    assert await store.find(DIGEST) is None
    assert await store.find(OTHER) == FINGERPRINT


async def test_session_reopened_takes_the_new_fingerprint_and_ttl(harness: Harness) -> None:
    store = harness.backend.sessions
    await store.open(DIGEST, FINGERPRINT, 0.2)
    await store.open(DIGEST, "e" * 64, 60.0)
    await harness.advance(0.25)
    assert await store.find(DIGEST) == "e" * 64


async def test_memory_sessions_past_the_cap_push_out_the_oldest() -> None:
    store = MemorySessionStore(ManualClock(), max_sessions=3)
    for digest in ("1", "2", "3", "4"):
        await store.open(digest, FINGERPRINT, 60.0)
    assert [await store.find(d) for d in ("1", "2", "3", "4")] == [None, *[FINGERPRINT] * 3]


async def test_memory_sessions_past_the_cap_push_out_expired_ones_first() -> None:
    clock = ManualClock()
    store = MemorySessionStore(clock, max_sessions=3)
    await store.open("long", FINGERPRINT, 60.0)
    await store.open("short-1", FINGERPRINT, 1.0)
    await store.open("short-2", FINGERPRINT, 1.0)
    clock.advance(2.0)
    await store.open("new-1", FINGERPRINT, 60.0)
    await store.open("new-2", FINGERPRINT, 60.0)
    assert await store.find("long") == FINGERPRINT  # the oldest, but still live
    assert await store.find("new-1") == FINGERPRINT
    assert await store.find("new-2") == FINGERPRINT
