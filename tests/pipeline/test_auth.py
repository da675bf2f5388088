import asyncio
import hashlib
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import SecretStr

from stellara.config.models import KeyConfig
from stellara.errors import AuthenticationError, PermissionDeniedError, StoreUnavailableError
from stellara.pipeline.auth import Authenticator
from stellara.principal import Principal
from stellara.store.keys import KeyRecord, key_digest
from stellara.testing import ManualClock

ALICE_KEY = "sk-alice-key-000001"
BOB_KEY = "sk-bob-key-000002"
MASTER_KEY = "sk-master-key-999"


def keys() -> list[KeyConfig]:
    return [
        KeyConfig(key=SecretStr(ALICE_KEY), user="alice"),
        KeyConfig(key=SecretStr(BOB_KEY), user="bob", models=["cheap", "fast"]),
    ]


@pytest.fixture
def auth() -> Authenticator:
    return Authenticator(MASTER_KEY, keys())


async def test_authenticate_static_key_gives_principal(auth):
    principal = await auth.authenticate(ALICE_KEY)
    assert principal.user == "alice"
    assert principal.allowed_models is None
    assert principal.is_master is False
    assert principal.key_id == key_digest(ALICE_KEY)[:12]


async def test_authenticate_static_key_with_models(auth):
    principal = await auth.authenticate(BOB_KEY)
    assert principal.user == "bob"
    assert principal.allowed_models == frozenset({"cheap", "fast"})


async def test_authenticate_distinct_keys_have_distinct_key_ids(auth):
    assert (await auth.authenticate(ALICE_KEY)).key_id != (await auth.authenticate(BOB_KEY)).key_id


def test_principal_may_use_unrestricted():
    principal = Principal("alice", "k1")
    assert principal.may_use("anything")


def test_principal_may_use_restricted():
    principal = Principal("bob", "k2", frozenset({"cheap"}))
    assert principal.may_use("cheap")
    assert not principal.may_use("smart")


def test_principal_empty_allowed_models_allows_nothing():
    assert not Principal("carol", "k3", frozenset()).may_use("cheap")


async def test_authenticate_master_key(auth):
    principal = await auth.authenticate(MASTER_KEY)
    assert principal.is_master is True
    assert principal.allowed_models is None
    assert auth.is_master(MASTER_KEY) is True


def test_is_master_false_for_user_key_and_missing(auth):
    assert auth.is_master(ALICE_KEY) is False
    assert auth.is_master(None) is False
    assert auth.is_master("") is False


def test_is_master_false_without_master_key():
    assert Authenticator(None, keys()).is_master(MASTER_KEY) is False


@pytest.mark.parametrize("master", [None, ""])
async def test_authenticate_without_master_key_rejects_it(master):
    auth = Authenticator(master, keys())
    with pytest.raises(AuthenticationError):
        await auth.authenticate(MASTER_KEY)
    with pytest.raises(AuthenticationError):
        await auth.authenticate("")


@pytest.mark.parametrize("token", [None, ""])
async def test_authenticate_missing_key(auth, token):
    with pytest.raises(AuthenticationError) as info:
        await auth.authenticate(token)
    assert info.value.status_code == 401
    assert "Missing API key" in info.value.message


@pytest.mark.parametrize("token", ["sk-wrong", ALICE_KEY + "x", ALICE_KEY[:-1], MASTER_KEY.upper()])
async def test_authenticate_wrong_key(auth, token):
    with pytest.raises(AuthenticationError) as info:
        await auth.authenticate(token)
    assert info.value.status_code == 401
    assert info.value.message == "Invalid API key."
    assert token not in info.value.message


async def test_authenticator_add_accepts_new_key(auth):
    principal = Principal("dave", "demo", frozenset({"cheap"}))
    auth.add("sk-runtime-key-1", principal)
    assert await auth.authenticate("sk-runtime-key-1") is principal
    assert (await auth.authenticate(ALICE_KEY)).user == "alice"


def test_key_digest_is_sha256_hex():
    assert key_digest("abc") == hashlib.sha256(b"abc").hexdigest()


def test_authenticator_holds_static_keys_only_as_digests(auth):
    auth.add("sk-runtime-key-1", Principal("dave", "demo"))
    held = repr(vars(auth))
    for plaintext in (ALICE_KEY, BOB_KEY, "sk-runtime-key-1"):
        assert plaintext not in held
    assert key_digest(ALICE_KEY) in held
    assert key_digest("sk-runtime-key-1") in held


async def test_authenticator_keeps_no_plaintext_master_key() -> None:
    master = "sk-master-plaintext-check-123"
    auth = Authenticator(master, [])
    assert master not in repr(vars(auth))
    assert (await auth.authenticate(master)).is_master


# --- virtual keys from the store -------------------------------------------------------


class FakeKeyStore:
    """Answers lookups from a dict; counts them; fails on demand."""

    def __init__(self) -> None:
        self.records: dict[str, KeyRecord] = {}
        self.lookups = 0
        self.is_down = False
        self.gate: asyncio.Event | None = None

    def put(self, key: str, **fields: Any) -> KeyRecord:
        values: dict[str, Any] = {
            "key_id": "key_1",
            "digest": key_digest(key),
            "prefix": key[:12],
            "user": "carol",
            "team": None,
            "tier": None,
            "models": None,
            "limits": None,
            "name": None,
            "created_at": 0.0,
            "expires_at": None,
            "revoked_at": None,
        }
        values.update(fields)
        record = KeyRecord(**values)
        self.records[record.digest] = record
        return record

    async def find(self, digest: str) -> KeyRecord | None:
        self.lookups += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.is_down:
            raise StoreUnavailableError("The key store is unavailable.")
        return self.records.get(digest)


class FakeKeySync:
    def __init__(self) -> None:
        self.published: list[str] = []
        self.callbacks: list[Callable[[str | None], None]] = []

    async def publish(self, digest: str) -> None:
        self.published.append(digest)

    def on_changed(self, callback: Callable[[str | None], None]) -> None:
        self.callbacks.append(callback)

    async def start(self) -> bool:
        return True


VIRTUAL_KEY = "sk-stl-virtual-key-0001"


@pytest.fixture
def store() -> FakeKeyStore:
    return FakeKeyStore()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def store_auth(store: FakeKeyStore, clock: ManualClock, **kwargs: Any) -> Authenticator:
    return Authenticator(MASTER_KEY, keys(), store=store, clock=clock, cache_ttl_s=5.0, **kwargs)


async def test_virtual_key_resolves_to_its_record(store, clock):
    store.put(
        VIRTUAL_KEY, team="t1", tier="pro", models=("cheap",), limits={"rate": {"requests": 3}}
    )
    principal = await store_auth(store, clock).authenticate(VIRTUAL_KEY)
    assert (principal.user, principal.team, principal.tier) == ("carol", "t1", "pro")
    assert principal.key_id == "key_1"
    assert principal.key_prefix == VIRTUAL_KEY[:12]
    assert principal.allowed_models == frozenset({"cheap"})
    assert principal.limits is not None
    assert principal.limits.rate is not None
    assert principal.limits.rate.requests == 3


async def test_virtual_key_is_cached_for_the_ttl_then_looked_up_again(store, clock):
    store.put(VIRTUAL_KEY)
    auth = store_auth(store, clock)
    for _ in range(3):
        await auth.authenticate(VIRTUAL_KEY)
    assert store.lookups == 1
    clock.advance(5.1)
    await auth.authenticate(VIRTUAL_KEY)
    assert store.lookups == 2


async def test_concurrent_first_uses_share_one_lookup(store, clock):
    store.put(VIRTUAL_KEY)
    store.gate = asyncio.Event()
    auth = store_auth(store, clock)
    waiting = [asyncio.create_task(auth.authenticate(VIRTUAL_KEY)) for _ in range(20)]
    await asyncio.sleep(0)
    store.gate.set()
    principals = await asyncio.gather(*waiting)
    assert {p.user for p in principals} == {"carol"}
    assert store.lookups == 1


async def test_revoked_key_is_refused_with_its_reason(store, clock):
    store.put(VIRTUAL_KEY, revoked_at=1.0)
    with pytest.raises(AuthenticationError, match="revoked"):
        await store_auth(store, clock).authenticate(VIRTUAL_KEY)


async def test_expiry_is_checked_on_every_use_even_cached(store, clock):
    store.put(VIRTUAL_KEY, expires_at=clock.time() + 2)
    auth = store_auth(store, clock)
    assert (await auth.authenticate(VIRTUAL_KEY)).user == "carol"
    clock.advance(2)
    with pytest.raises(AuthenticationError, match="expired"):
        await auth.authenticate(VIRTUAL_KEY)
    assert store.lookups == 1  # refused from the cache


async def test_forget_drops_the_cached_key_and_tells_other_processes(store, clock):
    record = store.put(VIRTUAL_KEY)
    sync = FakeKeySync()
    auth = store_auth(store, clock, sync=sync)
    await auth.authenticate(VIRTUAL_KEY)
    store.put(VIRTUAL_KEY, revoked_at=clock.time())
    auth.forget(record.digest)
    with pytest.raises(AuthenticationError, match="revoked"):
        await auth.authenticate(VIRTUAL_KEY)
    await auth.close()
    assert sync.published == [record.digest]


async def test_a_change_heard_from_another_process_applies_at_once(store, clock):
    record = store.put(VIRTUAL_KEY)
    sync = FakeKeySync()
    auth = store_auth(store, clock, sync=sync)
    await auth.authenticate(VIRTUAL_KEY)
    store.records.pop(record.digest)
    for callback in sync.callbacks:
        callback(record.digest)
    with pytest.raises(AuthenticationError, match="Invalid API key"):
        await auth.authenticate(VIRTUAL_KEY)
    assert sync.published == []  # heard, not repeated


async def test_unknown_key_is_remembered_only_briefly(store, clock):
    auth = store_auth(store, clock)
    with pytest.raises(AuthenticationError):
        await auth.authenticate(VIRTUAL_KEY)
    store.put(VIRTUAL_KEY)  # created by another process without a key sync
    clock.advance(1.0)
    assert (await auth.authenticate(VIRTUAL_KEY)).user == "carol"


async def test_store_down_known_key_keeps_working_unknown_key_is_503(store, clock):
    store.put(VIRTUAL_KEY)
    auth = store_auth(store, clock)
    await auth.authenticate(VIRTUAL_KEY)
    store.is_down = True
    clock.advance(10)
    assert (await auth.authenticate(VIRTUAL_KEY)).user == "carol"
    with pytest.raises(StoreUnavailableError) as info:
        await auth.authenticate("sk-stl-never-seen-000")
    assert info.value.status_code == 503
    assert (await auth.authenticate(ALICE_KEY)).user == "alice"  # static keys need no store


async def test_master_key_refused_for_model_calls_unless_allowed():
    with pytest.raises(PermissionDeniedError, match="master key"):
        await Authenticator(MASTER_KEY, keys()).authenticate(MASTER_KEY, model_call=True)
    allowed = Authenticator(MASTER_KEY, keys(), master_key_model_calls=True)
    assert (await allowed.authenticate(MASTER_KEY, model_call=True)).is_master
