"""The `ResponsesStore` contract: every test runs against memory (manual clock) and Redis (real
time, short TTLs). Entries are sized exactly (`stored_bytes`), so the cap's arithmetic shows."""

from __future__ import annotations

import pytest

from stellara.errors import PayloadTooLargeError, StoredResponseTooLargeError
from stellara.state.base import StoredResponse, stored_bytes
from tests.state.conftest import Harness, stored

USER = "alice"
ENTRY = 100  # bytes per entry in the cap tests
CAP = 3 * ENTRY
LONG_S = 60.0


def blob_of(response_id: str, size: int, user: str = USER) -> bytes:
    """A blob that makes the entry `size` bytes in all, id and user included."""
    blob = b"x" * (size - stored_bytes(response_id, user, b""))
    assert stored_bytes(response_id, user, blob) == size
    return blob


async def put(harness: Harness, response_id: str, size: int = ENTRY, ttl_s: float = LONG_S) -> None:
    blob = blob_of(response_id, size)
    await stored(harness.backend.responses, response_id, USER, blob, ttl_s, max_stored_bytes=CAP)


async def live(harness: Harness, *response_ids: str) -> list[str]:
    """Which of `response_ids` the store still holds, in the order given."""
    return [rid for rid in response_ids if await harness.backend.responses.get(rid) is not None]


async def test_responses_stored_is_found_with_its_user_and_exact_bytes(harness: Harness) -> None:
    store = harness.backend.responses
    blob = bytes(range(256)) * 4  # not text: every byte value, NUL included
    await stored(store, "resp_1", "bob@example.com", blob, LONG_S, max_stored_bytes=CAP * 10)
    await stored(store, "resp_2", "Zoë", b"{}", LONG_S, max_stored_bytes=CAP * 10)
    assert await store.get("resp_1") == StoredResponse("bob@example.com", blob)
    assert await store.get("resp_2") == StoredResponse("Zoë", b"{}")
    assert await store.get("resp_unknown") is None


async def test_responses_delete_says_whether_there_was_one(harness: Harness) -> None:
    store = harness.backend.responses
    await put(harness, "resp_1")
    await put(harness, "resp_2")
    assert await store.delete("resp_1") is True
    assert await store.get("resp_1") is None
    assert await store.delete("resp_1") is False
    assert await store.delete("resp_never") is False
    assert await live(harness, "resp_2") == ["resp_2"]


async def test_responses_expire_after_their_ttl(harness: Harness) -> None:
    store = harness.backend.responses
    await put(harness, "resp_short", ttl_s=0.2)
    await put(harness, "resp_long")
    await harness.advance(0.1)
    assert await live(harness, "resp_short") == ["resp_short"]
    await harness.advance(0.15)
    assert await store.get("resp_short") is None
    assert await store.delete("resp_short") is False
    assert await live(harness, "resp_long") == ["resp_long"]


async def test_responses_stored_again_replace_the_entry_and_its_ttl(harness: Harness) -> None:
    store = harness.backend.responses
    await stored(store, "resp_1", USER, b"old", 0.2, max_stored_bytes=CAP)
    await stored(store, "resp_1", "bob", b"new", LONG_S, max_stored_bytes=CAP)
    await harness.advance(0.25)
    assert await store.get("resp_1") == StoredResponse("bob", b"new")


async def test_responses_past_the_cap_evict_the_oldest_first(harness: Harness) -> None:
    for rid in ("resp_a", "resp_b", "resp_c", "resp_d"):
        await put(harness, rid)
    assert await live(harness, "resp_a", "resp_b", "resp_c", "resp_d") == [
        "resp_b",
        "resp_c",
        "resp_d",
    ]
    await put(harness, "resp_e", size=2 * ENTRY)  # needs two entries' room: b and c go
    assert await live(harness, "resp_b", "resp_c", "resp_d", "resp_e") == ["resp_d", "resp_e"]


async def test_responses_an_entry_at_the_cap_evicts_all_the_others(harness: Harness) -> None:
    await put(harness, "resp_a")
    await put(harness, "resp_b")
    await put(harness, "resp_full", size=CAP)
    assert await live(harness, "resp_a", "resp_b", "resp_full") == ["resp_full"]


async def test_responses_stored_again_count_once(harness: Harness) -> None:
    await put(harness, "resp_a")
    await put(harness, "resp_b")
    for _ in range(5):  # as a retried `put` does
        await put(harness, "resp_c")
    assert await live(harness, "resp_a", "resp_b", "resp_c") == ["resp_a", "resp_b", "resp_c"]
    await put(harness, "resp_a")  # stored again: now the newest, so b is the oldest
    await put(harness, "resp_d")
    assert await live(harness, "resp_a", "resp_b", "resp_c", "resp_d") == [
        "resp_a",
        "resp_c",
        "resp_d",
    ]


async def test_responses_deleted_give_back_their_room(harness: Harness) -> None:
    for rid in ("resp_a", "resp_b", "resp_c"):
        await put(harness, rid)
    assert await harness.backend.responses.delete("resp_b")
    await put(harness, "resp_d")
    assert await live(harness, "resp_a", "resp_c", "resp_d") == ["resp_a", "resp_c", "resp_d"]


async def test_responses_expired_give_back_their_room_before_live_ones_go(
    harness: Harness,
) -> None:
    await put(harness, "resp_a", ttl_s=0.2)
    await put(harness, "resp_b", ttl_s=0.2)
    await put(harness, "resp_c")
    await harness.advance(0.25)
    await put(harness, "resp_d")
    await put(harness, "resp_e")
    assert await live(harness, "resp_c", "resp_d", "resp_e") == ["resp_c", "resp_d", "resp_e"]


async def test_responses_larger_than_the_cap_are_refused_and_evict_nothing(
    harness: Harness,
) -> None:
    store = harness.backend.responses
    await put(harness, "resp_a")
    blob = blob_of("resp_huge", CAP + 1)
    with pytest.raises(StoredResponseTooLargeError) as caught:
        await stored(store, "resp_huge", USER, blob, LONG_S, max_stored_bytes=CAP)
    assert (caught.value.size, caught.value.max_stored_bytes) == (CAP + 1, CAP)
    assert isinstance(caught.value, PayloadTooLargeError)
    assert caught.value.status_code == 413
    assert await store.get("resp_huge") is None
    assert await live(harness, "resp_a") == ["resp_a"]


async def test_responses_cap_is_the_one_each_call_gives(harness: Harness) -> None:
    for rid in ("resp_a", "resp_b", "resp_c"):
        await put(harness, rid)
    store = harness.backend.responses
    blob = blob_of("resp_d", ENTRY)
    await stored(store, "resp_d", USER, blob, LONG_S, max_stored_bytes=2 * ENTRY)  # lowered
    assert await live(harness, "resp_a", "resp_b", "resp_c", "resp_d") == ["resp_c", "resp_d"]
